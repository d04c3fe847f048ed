//! Smart-contract payers: ERC-1271 signature checks and ERC-6492 counterfactual signatures.
//!
//! An ERC-6492 signature lets a wallet that is not deployed yet sign: it is
//! `abi.encode(factory, factoryCalldata, innerSignature)` followed by a 32-byte magic suffix.
//! Calling `factory` with `factoryCalldata` deploys the wallet, which then judges
//! `innerSignature` through ERC-1271.

use alloy::primitives::{Address, Bytes, address};
use alloy::sol_types::SolValue;

alloy::sol! {
    /// ERC-1271: a contract says whether it accepts a signature of a hash.
    interface IErc1271 {
        function isValidSignature(bytes32 hash, bytes signature) external view returns (bytes4);
    }

    /// The part of Multicall3 used to deploy a wallet and pay from it in one call.
    interface IMulticall3 {
        struct Call3 {
            address target;
            bool allowFailure;
            bytes callData;
        }
        struct Result {
            bool success;
            bytes returnData;
        }
        function aggregate3(Call3[] calls) external payable returns (Result[] returnData);
    }
}

/// What `isValidSignature` returns for a signature the wallet accepts.
pub const ERC1271_MAGIC_VALUE: [u8; 4] = [0x16, 0x26, 0xba, 0x7e];

/// The 32 bytes that end every ERC-6492 signature.
pub const ERC6492_MAGIC_SUFFIX: [u8; 32] = [
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
];

/// Multicall3, at the same address on every chain that has it. Verification simulates a
/// counterfactual wallet's deployment and payment through it, and settlement sends both in
/// one transaction through it.
pub const MULTICALL3_ADDRESS: Address = address!("cA11bde05977b3631167028862bE2a173976CA11");

/// How to deploy a counterfactual wallet: call `factory` with `factory_calldata`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erc6492Deployment {
    /// The factory contract.
    pub factory: Address,
    /// The call that deploys the wallet.
    pub factory_calldata: Bytes,
}

/// A payment signature with any ERC-6492 wrapping taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayerSignature {
    /// The signature the payer's account judges (ECDSA or ERC-1271).
    pub inner: Bytes,
    /// The deployment an ERC-6492 wrapper carried, if it named a factory and calldata.
    pub deployment: Option<Erc6492Deployment>,
}

/// An ERC-6492 suffix on a signature whose body does not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("signature ends in the ERC-6492 suffix but is not abi.encode(address, bytes, bytes): {0}")]
pub struct Erc6492DecodeError(String);

impl PayerSignature {
    /// Splits `signature`: an ERC-6492 wrapper gives its inner signature and, when it names a
    /// factory (not the zero address) with calldata, the deployment. Anything else is inner.
    pub fn parse(signature: &Bytes) -> Result<Self, Erc6492DecodeError> {
        let Some(body) = signature.strip_suffix(&ERC6492_MAGIC_SUFFIX) else {
            return Ok(Self {
                inner: signature.clone(),
                deployment: None,
            });
        };
        let (factory, factory_calldata, inner) = <(Address, Bytes, Bytes)>::abi_decode_params(body)
            .map_err(|e| Erc6492DecodeError(e.to_string()))?;
        let deployment =
            (!factory.is_zero() && !factory_calldata.is_empty()).then_some(Erc6492Deployment {
                factory,
                factory_calldata,
            });
        Ok(Self { inner, deployment })
    }
}

/// Wraps `inner` as an ERC-6492 signature of a wallet that `factory_calldata` sent to
/// `factory` deploys.
pub fn wrap_erc6492(factory: Address, factory_calldata: &Bytes, inner: &Bytes) -> Bytes {
    let mut wrapped = (factory, factory_calldata.clone(), inner.clone()).abi_encode_params();
    wrapped.extend_from_slice(&ERC6492_MAGIC_SUFFIX);
    wrapped.into()
}

/// Whether an `isValidSignature` answer is the ERC-1271 magic value.
pub(crate) fn is_erc1271_magic(answer: &[u8]) -> bool {
    answer.len() >= 4 && answer[..4] == ERC1271_MAGIC_VALUE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_round_trips_and_plain_signatures_pass_through() {
        let factory = address!("4020000000000000000000000000000000006492");
        let calldata = Bytes::from(vec![1, 2, 3, 4, 5]);
        let inner = Bytes::from(vec![7u8; 65]);
        let wrapped = wrap_erc6492(factory, &calldata, &inner);
        assert!(wrapped.ends_with(&ERC6492_MAGIC_SUFFIX));
        let parsed = PayerSignature::parse(&wrapped).unwrap();
        assert_eq!(parsed.inner, inner);
        assert_eq!(
            parsed.deployment,
            Some(Erc6492Deployment {
                factory,
                factory_calldata: calldata
            })
        );

        let plain = PayerSignature::parse(&inner).unwrap();
        assert_eq!(plain.inner, inner);
        assert_eq!(plain.deployment, None);

        // A zero factory is a wrapper without deployment data.
        let no_factory = wrap_erc6492(Address::ZERO, &Bytes::from(vec![1]), &inner);
        assert_eq!(PayerSignature::parse(&no_factory).unwrap().deployment, None);

        let mut garbage = vec![0xab; 10];
        garbage.extend_from_slice(&ERC6492_MAGIC_SUFFIX);
        assert!(PayerSignature::parse(&garbage.into()).is_err());
    }

    #[test]
    fn magic_value_is_recognised() {
        assert!(is_erc1271_magic(&[0x16, 0x26, 0xba, 0x7e, 0, 0]));
        assert!(!is_erc1271_magic(&[0xff, 0xff, 0xff, 0xff]));
        assert!(!is_erc1271_magic(&[]));
    }
}
