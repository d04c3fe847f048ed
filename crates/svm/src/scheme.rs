//! `exact` on Solana with a chain: verification's simulation, and settlement's co-signature,
//! send and bounded confirmation.

use std::time::{Duration, Instant};

use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;
use x402_proto::{PaymentRequest, VerifyResponse};

use crate::payload::ExactSvmPayload;
use crate::verify::Refused;
use crate::{
    CheckedPayment, PaymentTerms, RpcError, SolanaRpc, VerifyError, VerifyLimits, check_payment,
};

/// The keys a facilitator pays fees with.
#[derive(Debug)]
pub struct FeePayers {
    keys: Vec<Keypair>,
    addresses: Vec<Pubkey>,
}

impl FeePayers {
    /// The fee payers holding `keys`.
    pub fn new(keys: Vec<Keypair>) -> Self {
        let addresses = keys.iter().map(Signer::pubkey).collect();
        Self { keys, addresses }
    }

    /// Their addresses.
    pub fn addresses(&self) -> &[Pubkey] {
        &self.addresses
    }

    fn key(&self, address: &Pubkey) -> Option<&Keypair> {
        self.keys.iter().find(|key| key.pubkey() == *address)
    }
}

/// A payment that passed every check, simulation included: the only way to settle.
#[derive(Clone, Debug)]
pub struct VerifiedPayment {
    /// What the local checks found.
    pub checked: CheckedPayment,
}

/// How a sent settlement ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Landing {
    /// Confirmed on chain with no error.
    Confirmed {
        /// The transaction signature (base58).
        signature: String,
    },
    /// Landed with an error: the fee was paid, no token moved.
    Failed {
        /// The transaction signature.
        signature: String,
        /// The chain's error, as JSON.
        err: String,
    },
    /// Not seen confirmed within the bound; it may still land.
    Pending {
        /// The transaction signature.
        signature: String,
    },
}

/// The `exact` scheme on one Solana network.
#[derive(Debug)]
pub struct ExactSvmScheme {
    rpc: SolanaRpc,
    fee_payers: FeePayers,
    limits: VerifyLimits,
}

impl ExactSvmScheme {
    /// The scheme over `rpc`, paying fees with `fee_payers`, within `limits`.
    pub fn new(rpc: SolanaRpc, fee_payers: FeePayers, limits: VerifyLimits) -> Self {
        Self {
            rpc,
            fee_payers,
            limits,
        }
    }

    /// The node.
    pub fn rpc(&self) -> &SolanaRpc {
        &self.rpc
    }

    /// The fee payers.
    pub fn fee_payers(&self) -> &FeePayers {
        &self.fee_payers
    }

    /// Verifies `request` as the official facilitator does: its local checks, then a
    /// simulation of the client-signed transaction (fee payer's signature still empty).
    pub async fn verify(&self, request: &PaymentRequest) -> Result<VerifiedPayment, Refused> {
        let terms = PaymentTerms::of(request);
        let checked = check_payment(&terms, self.fee_payers.addresses(), &self.limits)?;
        let payer = Some(checked.payer);
        let transaction = terms
            .payload
            .get("transaction")
            .and_then(|t| t.as_str())
            .unwrap_or_default();
        match self.rpc.simulate(transaction).await {
            Ok(outcome) => match outcome.err {
                None => Ok(VerifiedPayment { checked }),
                Some(err) => Err((VerifyError::SimulationFailed(err.to_string()), payer)),
            },
            Err(RpcError::Refused { message, .. }) => {
                Err((VerifyError::SimulationFailed(message), payer))
            }
            Err(error) => Err((VerifyError::Rpc(error.to_string()), payer)),
        }
    }

    /// [`verify`](Self::verify) as the answer to `POST /verify`.
    pub async fn verify_response(
        &self,
        request: &PaymentRequest,
    ) -> Result<VerifyResponse, VerifyError> {
        match self.verify(request).await {
            Ok(verified) => Ok(VerifyResponse::valid(verified.checked.payer.to_string())),
            Err((error, _)) if error.is_internal() => Err(error),
            Err((error, payer)) => Ok(VerifyResponse::invalid(
                error.reason(request.version()),
                error.to_string(),
                payer.map(|p| p.to_string()),
            )),
        }
    }

    /// Co-signs a verified payment as its fee payer; returns the base64 wire transaction.
    pub fn cosign(&self, verified: &VerifiedPayment) -> Result<String, String> {
        let checked = &verified.checked;
        let key = self
            .fee_payers
            .key(&checked.fee_payer)
            .ok_or("the fee payer's key is not held")?;
        let mut transaction = checked.decoded.transaction.clone();
        let signature = key.sign_message(&checked.decoded.message_bytes);
        *transaction
            .signatures
            .first_mut()
            .ok_or("the transaction has no signature slots")? = signature;
        Ok(ExactSvmPayload::of(&transaction).transaction)
    }

    /// Sends a co-signed transaction and waits for it, polling as the official facilitator
    /// does (every 250 ms for 2 s, then every second), for at most `patience`.
    pub async fn send_and_confirm(
        &self,
        transaction: &str,
        patience: Duration,
    ) -> Result<Landing, RpcError> {
        let signature = self.rpc.send(transaction).await?;
        Ok(self.confirm(signature, patience).await)
    }

    /// Waits for `signature` to be confirmed, for at most `patience`.
    pub async fn confirm(&self, signature: String, patience: Duration) -> Landing {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.rpc.signature_status(&signature).await {
                if let Some(err) = status.err {
                    return Landing::Failed {
                        signature,
                        err: err.to_string(),
                    };
                }
                if status.is_confirmed() {
                    return Landing::Confirmed { signature };
                }
            }
            let waited = started.elapsed();
            if waited >= patience {
                return Landing::Pending { signature };
            }
            let step = if waited < Duration::from_secs(2) {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(1)
            };
            tokio::time::sleep(step.min(patience - waited)).await;
        }
    }
}
