//! `batch-settlement`, driven on the escrow as the official facilitator would: the payer opens a
//! channel with an ERC-3009 deposit (sent through the collector by the facilitator account),
//! pays every call with a cumulative voucher that the server verifies locally against its
//! mirror of the channel's funds, and the receiver authorizer claims the last voucher, settles
//! the claimed tokens to the payee and refunds the unused rest to the payer.

use std::fmt;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;
use anyhow::ensure;
use serde_json::json;
use x402_devnet::Devnet;
use x402_evm::batch::{
    self, BATCH_SETTLEMENT_ADDRESS, BatchDomain, ChannelConfig, ChannelFunds, ChannelId,
    ChannelTerms, ClaimedVoucher, DepositAuthorization, DepositPayload,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS, VoucherClaim, VoucherFields, VoucherPurpose,
};
use x402_evm::unix_now;
use x402_proto::{Scheme, v2};

use super::CallPrice;
use super::chain::{Balance, escrow, send, view};
use super::per_call::offer;
use super::tally::{Every, Paid, Transaction};

/// How long the server's local voucher checks took over the run.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Verifies {
    count: u32,
    total: Duration,
}

impl Verifies {
    /// The server's check of a call's `voucher`, timed: valid against the mirrored `funds`,
    /// and covering `charged` (all the calls so far, this one included).
    fn check(
        &mut self,
        terms: &ChannelTerms,
        config: &ChannelConfig,
        voucher: &VoucherFields,
        funds: ChannelFunds,
        charged: u128,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let verified =
            batch::verify_voucher_locally(terms, config, voucher, funds, VoucherPurpose::Payment);
        self.total += started.elapsed();
        self.count += 1;
        ensure!(
            verified?.max_claimable_amount >= charged,
            "the voucher for {} does not cover its call",
            voucher.max_claimable_amount
        );
        Ok(())
    }
}

impl fmt::Display for Verifies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let each = self.total.checked_div(self.count).unwrap_or_default();
        write!(
            f,
            "batch-settlement: {} vouchers verified locally (verify_voucher_locally), {:.1} µs each",
            self.count,
            each.as_secs_f64() * 1e6
        )
    }
}

/// One open channel: its terms, the payer's key, the receiver authorizer's key.
struct Channel<'a> {
    devnet: &'a Devnet,
    payer: &'a PrivateKeySigner,
    receiver_authorizer: &'a PrivateKeySigner,
    config: ChannelConfig,
    domain: BatchDomain,
    id: ChannelId,
}

/// `calls` calls paid over one channel, each charged `price.used`; the chain must pay the payee
/// exactly the calls' charges and leave the payer out of exactly as much.
pub(super) async fn run(
    devnet: &Devnet,
    price: &CallPrice,
    calls: u64,
) -> anyhow::Result<(Paid, Verifies)> {
    let payer = &devnet.payers()[3].signer;
    let receiver_authorizer = &devnet.facilitator().signer;
    let requirements = offer(
        devnet,
        Scheme::BATCH_SETTLEMENT,
        price.quoted,
        json!({"receiverAuthorizer": receiver_authorizer.address(), "withdrawDelay": 900}),
    );
    let config =
        batch::channel_config_for(&requirements, payer.address(), payer.address(), B256::ZERO)?;
    let domain = batch::domain_of(&requirements)?;
    let channel = Channel {
        devnet,
        payer,
        receiver_authorizer,
        config,
        domain,
        id: domain.channel_id(&config),
    };
    let terms = ChannelTerms::from_requirements(&requirements)?;
    let watched = Watched::start(devnet, payer.address()).await?;

    // The payer deposits what its last voucher may claim: what the calls before it used, plus
    // the quote of the last.
    let used = u128::try_from(price.used.0)?;
    let quoted = price.quoted.0;
    let deposit = batch::next_ceiling(used * u128::from(calls - 1), quoted)?;
    let (deposit_gas, first_voucher) = channel.open(&requirements, deposit, quoted).await?;
    let funds = channel.funds().await?;
    ensure!(
        funds.balance == deposit && funds.total_claimed == 0,
        "the new channel holds {funds:?}"
    );
    let mut verifies = Verifies::default();
    let mut charged = 0u128;
    let mut voucher = first_voucher;
    for call in 0..calls {
        if call > 0 {
            voucher = channel
                .voucher(batch::next_ceiling(charged, quoted)?)
                .await?;
        }
        verifies.check(&terms, &config, &voucher, funds, charged + used)?;
        charged += used;
    }

    let claim_gas = channel.claim(voucher, charged).await?;
    let settle_gas = channel.settle().await?;
    let refund_gas = channel.refund(funds.balance - charged).await?;
    watched.check(devnet, U256::from(charged)).await?;
    ensure!(charged == used * u128::from(calls));

    let transactions = [
        (
            "deposit (ERC-3009, through the collector)",
            deposit_gas,
            Every::Run,
        ),
        (
            "claimWithSignature (the last voucher)",
            claim_gas,
            Every::Run,
        ),
        (
            "settle (the claimed tokens to the payee)",
            settle_gas,
            Every::Run,
        ),
        (
            "refundWithSignature (the unused rest)",
            refund_gas,
            Every::Aside,
        ),
    ];
    let paid = Paid {
        scheme: "batch-settlement",
        charged_per_call: price.used.0,
        transactions: transactions
            .into_iter()
            .map(|(what, gas, every)| Transaction { what, gas, every })
            .collect(),
    };
    Ok((paid, verifies))
}

impl Channel<'_> {
    /// The payer's voucher letting the receiver claim up to `ceiling` in all.
    async fn voucher(&self, ceiling: u128) -> anyhow::Result<VoucherFields> {
        Ok(batch::sign_voucher(self.payer, &self.domain, self.id, ceiling).await?)
    }

    /// Opens the channel as the first call does: the payer signs a deposit of `amount` with
    /// a voucher for the call's `quoted` price, and the facilitator submits the deposit. The
    /// deposit's gas and the voucher.
    async fn open(
        &self,
        requirements: &v2::PaymentRequirements,
        amount: u128,
        quoted: U256,
    ) -> anyhow::Result<(u64, VoucherFields)> {
        let voucher = self.voucher(batch::next_ceiling(0, quoted)?).await?;
        let deposit = batch::sign_erc3009_deposit(
            self.payer,
            requirements,
            self.config,
            voucher,
            amount,
            B256::random(),
            unix_now(),
        )
        .await?;
        Ok((self.deposit(&deposit).await?, deposit.voucher))
    }

    /// Submits the payer's signed `deposit` as the facilitator does; its gas.
    async fn deposit(&self, deposit: &DepositPayload) -> anyhow::Result<u64> {
        let DepositAuthorization::Erc3009Authorization(authorization) =
            &deposit.deposit.authorization
        else {
            anyhow::bail!("not an ERC-3009 deposit");
        };
        let collector_data = (
            authorization.valid_after,
            authorization.valid_before,
            authorization.salt,
            authorization.signature.clone(),
        )
            .abi_encode_params();
        let call = escrow::depositCall {
            config: deposit.channel_config.to_sol().into(),
            amount: deposit.deposit.amount,
            collector: ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
            collectorData: collector_data.into(),
        };
        send(self.devnet, BATCH_SETTLEMENT_ADDRESS, call).await
    }

    /// The channel's funds on chain: what the server mirrors.
    async fn funds(&self) -> anyhow::Result<ChannelFunds> {
        let call = escrow::channelsCall {
            channelId: *self.id.as_b256(),
        };
        let state = view(self.devnet, BATCH_SETTLEMENT_ADDRESS, call).await?;
        Ok(ChannelFunds {
            balance: state.balance,
            total_claimed: state.totalClaimed,
        })
    }

    /// Claims `total` with `voucher` in one `claimWithSignature` row signed by the receiver
    /// authorizer; its gas.
    async fn claim(&self, voucher: VoucherFields, total: u128) -> anyhow::Result<u64> {
        let claims = [VoucherClaim {
            voucher: ClaimedVoucher {
                channel: self.config,
                max_claimable_amount: voucher.max_claimable_amount,
            },
            signature: voucher.signature,
            total_claimed: total,
        }];
        let signature =
            batch::sign_claim_batch(self.receiver_authorizer, &self.domain, &claims).await?;
        let call = escrow::claimWithSignatureCall {
            voucherClaims: claims
                .iter()
                .map(|claim| {
                    let voucher = &claim.voucher;
                    (
                        (
                            voucher.channel.to_sol().into(),
                            voucher.max_claimable_amount,
                        ),
                        claim.signature.clone(),
                        claim.total_claimed,
                    )
                })
                .collect(),
            authorizerSignature: signature,
        };
        send(self.devnet, BATCH_SETTLEMENT_ADDRESS, call).await
    }

    /// Moves what the receiver has claimed to it; its gas.
    async fn settle(&self) -> anyhow::Result<u64> {
        let call = escrow::settleCall {
            receiver: self.config.receiver,
            token: self.config.token,
        };
        send(self.devnet, BATCH_SETTLEMENT_ADDRESS, call).await
    }

    /// Returns `amount` of the unclaimed escrow to the payer with the receiver authorizer's
    /// consent; its gas.
    async fn refund(&self, amount: u128) -> anyhow::Result<u64> {
        let nonce_call = escrow::refundNonceCall {
            channelId: *self.id.as_b256(),
        };
        let nonce = view(self.devnet, BATCH_SETTLEMENT_ADDRESS, nonce_call).await?;
        let signature = batch::sign_refund(
            self.receiver_authorizer,
            &self.domain,
            &self.id,
            nonce,
            amount,
        )
        .await?;
        let call = escrow::refundWithSignatureCall {
            config: self.config.to_sol().into(),
            amount,
            nonce,
            receiverAuthorizerSignature: signature,
        };
        send(self.devnet, BATCH_SETTLEMENT_ADDRESS, call).await
    }
}

/// The balances a channel's run must move: the payee's, the payer's and the escrow's.
struct Watched {
    payee: Balance,
    payer: Balance,
    escrow: Balance,
}

impl Watched {
    async fn start(devnet: &Devnet, payer: Address) -> anyhow::Result<Self> {
        Ok(Self {
            payee: Balance::watch(devnet, devnet.pay_to().address).await?,
            payer: Balance::watch(devnet, payer).await?,
            escrow: Balance::watch(devnet, BATCH_SETTLEMENT_ADDRESS).await?,
        })
    }

    /// That the payee got exactly `charged`, the payer lost exactly as much, and the escrow
    /// kept nothing.
    async fn check(&self, devnet: &Devnet, charged: U256) -> anyhow::Result<()> {
        let got = self.payee.rise(devnet).await?;
        let paid = self.payer.fall(devnet).await?;
        let kept = self.escrow.rise(devnet).await?;
        ensure!(
            got == charged && paid == charged && kept.is_zero(),
            "charged {charged}: the payee got {got}, the payer paid {paid}, the escrow kept {kept}"
        );
        Ok(())
    }
}
