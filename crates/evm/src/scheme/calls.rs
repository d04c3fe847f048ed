//! The calldata that settles a verified payment.

use super::*;

/// The `IEip3009` call `$call` of authorization `$auth`: its six fields, then the signature
/// arguments of that overload.
macro_rules! authorization_call {
    ($call:ident, $auth:expr, { $($signature:tt)* }) => {
        IEip3009::$call {
            from: $auth.from,
            to: $auth.to,
            value: $auth.value,
            validAfter: $auth.valid_after,
            validBefore: $auth.valid_before,
            nonce: $auth.nonce,
            $($signature)*
        }
    };
}

/// Calldata for `transferWithAuthorization`: the (v, r, s) overload for a 65-byte signature
/// (which tokens such as USDC v2.2 still route to ERC-1271 when `from` is a contract), the
/// `bytes` overload otherwise.
pub(crate) fn transfer_calldata(auth: &Authorization, signature: &Bytes) -> Vec<u8> {
    match Signature::from_raw(signature) {
        Ok(parsed) if signature.len() == 65 => {
            authorization_call!(transferWithAuthorization_0Call, auth, {
                v: 27 + u8::from(parsed.v()),
                r: parsed.r().into(),
                s: parsed.s().into(),
            })
            .abi_encode()
        }
        _ => authorization_call!(transferWithAuthorization_1Call, auth, {
            signature: signature.clone(),
        })
        .abi_encode(),
    }
}

/// The transaction that settles `payment`: the token's `transferWithAuthorization`, or, for a
/// wallet still to be deployed, Multicall3's `aggregate3` running the factory call (allowed to
/// fail, as when someone deployed the wallet meanwhile) and then the transfer (not allowed
/// to), so the deployment and the payment land together or not at all.
pub(crate) fn settlement_call(payment: &VerifiedPayment) -> (Address, Vec<u8>) {
    let transfer = transfer_calldata(&payment.payload.authorization, &payment.settle_signature);
    match &payment.deployment {
        None => (payment.asset, transfer),
        Some(deployment) => {
            let calls = vec![
                IMulticall3::Call3 {
                    target: deployment.factory,
                    allowFailure: true,
                    callData: deployment.factory_calldata.clone(),
                },
                IMulticall3::Call3 {
                    target: payment.asset,
                    allowFailure: false,
                    callData: transfer.into(),
                },
            ];
            (
                MULTICALL3_ADDRESS,
                IMulticall3::aggregate3Call { calls }.abi_encode(),
            )
        }
    }
}
