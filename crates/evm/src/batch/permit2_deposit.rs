//! Deposits taken through Permit2 (`permit2Authorization`): the payer signs a Permit2 witness
//! transfer of exactly the deposit to the Permit2 deposit collector, the channel as witness,
//! and the collector pulls it into the escrow. Checked in the official facilitator's order
//! (`batch-settlement/facilitator/deposit-permit2`): the payer, the spender, the token, the
//! amount, the witness channel, the deadline, the signature; then how Permit2 may move the
//! tokens: an EIP-2612 approval riding along (`eip2612GasSponsoring`, for exactly the deposit)
//! or the payer's allowance of Permit2.

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::{SolCall, SolValue};
use x402_proto::{FacilitatorError, PaymentRequest, ReasonCode, v2};

use super::PERMIT2_DEPOSIT_COLLECTOR_ADDRESS;
use super::facilitator::{BatchEvmFacilitator, PayerCode, Refusal, refuse};
use super::wire::{DepositPayload, Permit2DepositAuthorization};
use crate::permit2::{DEADLINE_BUFFER_SECS, PERMIT2_ADDRESS, Permit2612Parts, eip2612_sponsoring};

/// The extension a client sends to have an ERC-20 `approve` of Permit2 broadcast first; this
/// facilitator broadcasts none.
const ERC20_APPROVAL_GAS_SPONSORING: &str = "erc20ApprovalGasSponsoring";

alloy::sol! {
    /// The allowance read of a Permit2 deposit's checks.
    #[derive(Debug)]
    interface IAllowance {
        function allowance(address owner, address spender) external view returns (uint256);
    }
}

impl BatchEvmFacilitator {
    /// The Permit2 authorization of `deposit` (in `request`): the checks before the
    /// channel's, in the official order. The collector data to deposit with when it holds.
    pub(super) async fn check_permit2(
        &self,
        request: &PaymentRequest,
        requirements: &v2::PaymentRequirements,
        deposit: &DepositPayload,
        authorization: &Permit2DepositAuthorization,
        code: &PayerCode<'_>,
    ) -> Result<Result<Bytes, Refusal>, FacilitatorError> {
        let permit = &authorization.permit;
        let payer = deposit.channel_config.payer;
        if permit.from != payer {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_PERMIT2_INVALID_SIGNATURE,
                format!(
                    "the permit is {}'s, the channel's payer is {payer}",
                    permit.from
                ),
            )));
        }
        if permit.spender != PERMIT2_DEPOSIT_COLLECTOR_ADDRESS {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_PERMIT2_INVALID_SPENDER,
                format!(
                    "the permit's spender is {}, not the Permit2 deposit collector {PERMIT2_DEPOSIT_COLLECTOR_ADDRESS}",
                    permit.spender
                ),
            )));
        }
        let token = requirements.asset.parse::<Address>().ok();
        if token != Some(permit.permitted.token) {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_TOKEN_MISMATCH,
                "the permit is for another token than the offer's asset",
            )));
        }
        let amount = deposit.deposit.amount;
        if permit.permitted.amount != U256::from(amount) {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_PERMIT2_AMOUNT_MISMATCH,
                format!(
                    "the permit moves {}, the deposit is {amount}",
                    permit.permitted.amount
                ),
            )));
        }
        if permit.witness.channel_id != deposit.voucher.channel_id {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_CHANNEL_ID_MISMATCH,
                "the permit's witness names another channel than the voucher",
            )));
        }
        if permit.deadline < U256::from(crate::unix_now() + DEADLINE_BUFFER_SECS) {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_PERMIT2_DEADLINE_EXPIRED,
                "the permit's deadline has passed",
            )));
        }
        let digest = authorization.digest(self.chain.chain_id());
        let signature = super::facilitator::inner_signature(&authorization.signature);
        if !code.signed(digest, &signature).await? {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_PERMIT2_INVALID_SIGNATURE,
                format!("the permit is not signed by the payer {payer}"),
            )));
        }
        let approval = match eip2612_sponsoring(request, payer, permit.permitted.token) {
            Ok(approval) => approval,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if let Some(approval) = approval {
            if approval.value != U256::from(amount) {
                return Ok(Err(refuse(
                    ReasonCode::BATCH_SETTLEMENT_EVM_EIP2612_AMOUNT_MISMATCH,
                    "the EIP-2612 approval is not for exactly the deposit",
                )));
            }
            return Ok(Ok(collector_data(authorization, Some(approval))));
        }
        if erc20_approval_sent(request) {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_ERC20_APPROVAL_UNAVAILABLE,
                "this facilitator does not broadcast ERC-20 approvals (erc20ApprovalGasSponsoring)",
            )));
        }
        if self.permit2_allowance(permit.permitted.token, payer).await < U256::from(amount) {
            return Ok(Err(refuse(
                ReasonCode::BATCH_SETTLEMENT_EVM_PERMIT2_ALLOWANCE_REQUIRED,
                format!("{payer} has not approved Permit2 for the deposit"),
            )));
        }
        Ok(Ok(collector_data(authorization, None)))
    }

    /// `owner`'s allowance of Permit2 in `token`; zero when it cannot be read (as the official
    /// facilitator judges a failed read).
    async fn permit2_allowance(&self, token: Address, owner: Address) -> U256 {
        let read = IAllowance::allowanceCall {
            owner,
            spender: PERMIT2_ADDRESS,
        };
        let call = TransactionRequest::default()
            .to(token)
            .input(Bytes::from(read.abi_encode()).into());
        match self.chain.provider().call(call).await {
            Ok(answer) => {
                IAllowance::allowanceCall::abi_decode_returns(&answer).unwrap_or(U256::ZERO)
            }
            Err(_) => U256::ZERO,
        }
    }
}

/// Whether `request` carries an `erc20ApprovalGasSponsoring` approval (an `info` with the
/// fields of one; a server's declaration echoed back carries none).
fn erc20_approval_sent(request: &PaymentRequest) -> bool {
    let PaymentRequest::V2 { payload, .. } = request else {
        return false;
    };
    let info = payload
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get(ERC20_APPROVAL_GAS_SPONSORING))
        .and_then(|extension| extension.get("info"));
    let Some(info) = info else {
        return false;
    };
    let fields = [
        "from",
        "asset",
        "spender",
        "amount",
        "signedTransaction",
        "version",
    ];
    fields.iter().all(|key| {
        info.get(key)
            .and_then(serde_json::Value::as_str)
            .is_some_and(|value| !value.is_empty())
    })
}

/// The Permit2 collector's `collectorData`: `abi.encode(nonce, deadline, signature,
/// eip2612)`, `eip2612` being `abi.encode(value, deadline, v, r, s)` of an approval riding
/// along, or empty.
pub(super) fn collector_data(
    authorization: &Permit2DepositAuthorization,
    approval: Option<Permit2612Parts>,
) -> Bytes {
    let eip2612 = approval.map_or_else(Bytes::new, |approval| {
        let signature = approval.signature;
        let (r, s, v) = (
            alloy::primitives::B256::from_slice(&signature[..32]),
            alloy::primitives::B256::from_slice(&signature[32..64]),
            // A `uint8` takes a whole word, as a `uint256` of the same value.
            U256::from(signature[64]),
        );
        (approval.value, approval.deadline, v, r, s)
            .abi_encode_params()
            .into()
    });
    let permit = &authorization.permit;
    (
        permit.nonce,
        permit.deadline,
        super::facilitator::inner_signature(&authorization.signature),
        eip2612,
    )
        .abi_encode_params()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permit2::{Permit2Authorization, Permitted};
    use alloy::primitives::{B256, FixedBytes};

    #[test]
    fn the_collector_data_is_what_the_permit2_collector_decodes() {
        let authorization = Permit2DepositAuthorization {
            permit: Permit2Authorization {
                from: Address::repeat_byte(1),
                permitted: Permitted {
                    token: Address::repeat_byte(2),
                    amount: U256::from(9),
                },
                spender: PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
                nonce: U256::from(5),
                deadline: U256::from(6),
                witness: super::super::DepositWitness {
                    channel_id: super::super::ChannelId::new(B256::repeat_byte(3)),
                },
            },
            signature: Bytes::from(vec![7u8; 65]),
        };
        let plain = collector_data(&authorization, None);
        let (nonce, deadline, signature, eip2612) =
            <(U256, U256, Bytes, Bytes)>::abi_decode_params(&plain).unwrap();
        assert_eq!((nonce, deadline), (U256::from(5), U256::from(6)));
        assert_eq!(signature, authorization.signature);
        assert!(eip2612.is_empty());

        let mut rsv = [0u8; 65];
        rsv[..32].fill(0xaa);
        rsv[32..64].fill(0xbb);
        rsv[64] = 28;
        let approval = Permit2612Parts {
            value: U256::from(9),
            deadline: U256::from(60),
            signature: FixedBytes::from(rsv),
        };
        let sponsored = collector_data(&authorization, Some(approval));
        let (_, _, _, eip2612) =
            <(U256, U256, Bytes, Bytes)>::abi_decode_params(&sponsored).unwrap();
        let (value, deadline, v, r, s) =
            <(U256, U256, U256, B256, B256)>::abi_decode_params(&eip2612).unwrap();
        assert_eq!(
            (value, deadline, v),
            (U256::from(9), U256::from(60), U256::from(28))
        );
        assert_eq!((r, s), (B256::repeat_byte(0xaa), B256::repeat_byte(0xbb)));
    }
}
