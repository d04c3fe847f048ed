//! The paying side as a [`SchemeClient`] plug-in: `exact` offers on Solana signed with one key,
//! the mint and a recent blockhash read from a Solana RPC, as the official client does.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;
use x402_proto::{BoxFuture, Network, Scheme, SchemeClient, SchemeSignError, SignedPayload, v2};

use crate::{
    DEFAULT_COMPUTE_UNIT_LIMIT, DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS, DecodedPayment,
    ExactSvmPayload, Hash, Keypair, PaymentTransaction, Pubkey, Signer, SolanaRpc,
    TOKEN_2022_PROGRAM, TOKEN_PROGRAM, build_payment, random_memo,
};

/// Where the decimals sit in an SPL mint account (after the mint authority option and the
/// supply).
const MINT_DECIMALS_OFFSET: usize = 44;

/// Pays `exact` offers on Solana networks as one key pair, reading mints and blockhashes from
/// one RPC. Offers without the facilitator's `extra.feePayer` cannot be paid.
#[derive(Debug)]
pub struct ExactSvmClient {
    payer: Keypair,
    rpc: SolanaRpc,
    networks: Option<Vec<Network>>,
    /// Per mint: its token program and decimals (they never change).
    mints: Mutex<HashMap<Pubkey, (Pubkey, u8)>>,
}

impl ExactSvmClient {
    /// Pays as `payer`, with the chain read through `rpc`, on any Solana network.
    pub fn new(payer: Keypair, rpc: SolanaRpc) -> Self {
        Self {
            payer,
            rpc,
            networks: None,
            mints: Mutex::new(HashMap::new()),
        }
    }

    /// Pays only on `networks` (CAIP-2 or v1 names): the one the RPC serves, so that a
    /// mainnet offer is not signed with a devnet blockhash.
    pub fn on_networks(mut self, networks: Vec<Network>) -> Self {
        self.networks = Some(networks.iter().filter_map(Network::to_caip2).collect());
        self
    }

    /// The paying address.
    pub fn address(&self) -> Pubkey {
        self.payer.pubkey()
    }

    /// The mint's token program and decimals, read once.
    async fn mint(&self, mint: &Pubkey) -> Result<(Pubkey, u8), SchemeSignError> {
        if let Some(known) = self.mints.lock().expect("never poisoned").get(mint) {
            return Ok(*known);
        }
        let account = self
            .rpc
            .account(mint)
            .await
            .map_err(|e| SchemeSignError(format!("reading mint {mint}: {e}")))?
            .ok_or_else(|| SchemeSignError(format!("mint {mint} does not exist on this chain")))?;
        if account.owner != TOKEN_PROGRAM && account.owner != TOKEN_2022_PROGRAM {
            return Err(SchemeSignError(format!(
                "{mint} is not a token mint (owned by {})",
                account.owner
            )));
        }
        let decimals = *account
            .data
            .get(MINT_DECIMALS_OFFSET)
            .ok_or_else(|| SchemeSignError(format!("{mint} is too short for a mint")))?;
        let known = (account.owner, decimals);
        self.mints
            .lock()
            .expect("never poisoned")
            .insert(*mint, known);
        Ok(known)
    }

    /// The payment transaction for `requirements`, built and signed.
    async fn build(
        &self,
        requirements: &v2::PaymentRequirements,
    ) -> Result<ExactSvmPayload, SchemeSignError> {
        let extra = requirements.extra.clone().unwrap_or(Value::Null);
        let address = |text: Option<&str>, what: &str| {
            text.and_then(|t| t.parse::<Pubkey>().ok())
                .ok_or_else(|| SchemeSignError(format!("{what} is not a Solana address")))
        };
        let fee_payer = address(
            extra.get("feePayer").and_then(Value::as_str),
            "extra.feePayer",
        )?;
        let mint = address(Some(&requirements.asset), "asset")?;
        let pay_to = address(Some(&requirements.pay_to), "payTo")?;
        let amount = u64::try_from(requirements.amount.0)
            .map_err(|_| SchemeSignError("the amount does not fit a token amount".into()))?;
        let (token_program, decimals) = self.mint(&mint).await?;
        let recent_blockhash = match extra
            .get("recentBlockhash")
            .and_then(Value::as_str)
            .and_then(|h| h.parse::<Hash>().ok())
        {
            Some(hash) => hash,
            None => {
                self.rpc
                    .latest_blockhash()
                    .await
                    .map_err(|e| SchemeSignError(format!("reading a recent blockhash: {e}")))?
                    .blockhash
            }
        };
        let memo = match extra.get("memo").and_then(Value::as_str) {
            Some(memo) => memo.as_bytes().to_vec(),
            None => random_memo(),
        };
        let parts = PaymentTransaction {
            fee_payer,
            mint,
            token_program,
            decimals,
            pay_to,
            amount,
            recent_blockhash,
            memo,
            compute_unit_limit: DEFAULT_COMPUTE_UNIT_LIMIT,
            compute_unit_price: DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS,
        };
        let transaction = build_payment(&self.payer, &parts).map_err(SchemeSignError)?;
        Ok(ExactSvmPayload::of(&transaction))
    }
}

impl SchemeClient for ExactSvmClient {
    fn can_pay(&self, requirements: &v2::PaymentRequirements) -> bool {
        let Some(network) = requirements.network.to_caip2() else {
            return false;
        };
        requirements.scheme == Scheme::EXACT
            && network.namespace() == Some("solana")
            && self
                .networks
                .as_ref()
                .is_none_or(|allowed| allowed.contains(&network))
            && requirements
                .extra
                .as_ref()
                .and_then(|extra| extra.get("feePayer"))
                .is_some_and(Value::is_string)
    }

    fn payer(&self, _network: &Network) -> String {
        self.payer.pubkey().to_string()
    }

    fn sign<'a>(
        &'a self,
        requirements: &'a v2::PaymentRequirements,
        now: u64,
    ) -> BoxFuture<'a, Result<SignedPayload, SchemeSignError>> {
        Box::pin(async move {
            let payload = self.build(requirements).await?;
            let key = DecodedPayment::from_base64(&payload.transaction)
                .map_err(|e| SchemeSignError(e.to_string()))?
                .message_key();
            let mut signed =
                SignedPayload::plain(serde_json::to_value(&payload).expect("a payload serializes"));
            // What the payment spends once is its message (its blockhash expires it).
            signed.nonce = Some(key);
            signed.valid_before = Some(now + requirements.max_timeout_seconds);
            Ok(signed)
        })
    }
}
