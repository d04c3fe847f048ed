//! Uniswap's Permit2 at its canonical address, deployed the way it is on every chain: CREATE2
//! through the deterministic deployer anvil ships, with the canonical salt. Its EIP-712 domain
//! binds its address and the chain id, so its code cannot be dropped in with `anvil_setCode`.
//! The creation code is read at install time from npm (`scripts/install-permit2.sh`); nothing of
//! it is committed.

use std::path::PathBuf;

use alloy::primitives::{Address, B256, Bytes, address, b256, keccak256};

use crate::devnet::DevnetError;

/// Permit2's address on every chain.
pub const PERMIT2_ADDRESS: Address = address!("000000000022D473030F116dDEE9F6B43aC78BA3");

/// The deterministic CREATE2 deployer (present on anvil from its first block).
pub const CREATE2_DEPLOYER: Address = address!("4e59b44847b379578588920cA78FbF26c0B4956C");

/// The salt Permit2 was deployed with.
pub const PERMIT2_SALT: B256 =
    b256!("0000000000000000000000000000000000000000d3af2663da51c10215000000");

/// keccak256 of Permit2's creation code: what makes its CREATE2 address canonical.
pub const PERMIT2_INITCODE_HASH: B256 =
    b256!("e2be1e05eedf35dacd66c65c862f8150ff9ab4b6b24b9bbe62be71b6b16cf0f8");

const INITCODE_FILE: &str = "tools/permit2/Permit2.initcode.hex";

/// Permit2's creation code: from `X402_PERMIT2_INITCODE` (a file), or the file
/// `scripts/install-permit2.sh` writes, found from the working directory or this crate upwards.
/// Refused unless it hashes to [`PERMIT2_INITCODE_HASH`].
pub fn permit2_initcode() -> Result<Bytes, DevnetError> {
    let path = match std::env::var_os("X402_PERMIT2_INITCODE") {
        Some(path) => PathBuf::from(path),
        None => [
            std::env::current_dir().ok(),
            Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
        ]
        .into_iter()
        .flatten()
        .flat_map(|start| {
            start
                .ancestors()
                .map(|dir| dir.join(INITCODE_FILE))
                .collect::<Vec<_>>()
        })
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            DevnetError::Permit2(format!(
                "{INITCODE_FILE} not found; run scripts/install-tools.sh (it reads Permit2's creation code from npm)"
            ))
        })?,
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| DevnetError::Permit2(format!("reading {}: {e}", path.display())))?;
    let code: Bytes = text.trim().parse().map_err(|e| {
        DevnetError::Permit2(format!("{} is not hex creation code: {e}", path.display()))
    })?;
    if keccak256(&code) != PERMIT2_INITCODE_HASH {
        return Err(DevnetError::Permit2(format!(
            "{} is not Permit2's creation code (keccak {}); run scripts/install-permit2.sh again",
            path.display(),
            keccak256(&code)
        )));
    }
    Ok(code)
}

/// The address CREATE2 through [`CREATE2_DEPLOYER`] gives `initcode` with `salt`.
pub fn create2_address(salt: B256, initcode: &[u8]) -> Address {
    CREATE2_DEPLOYER.create2(salt, keccak256(initcode))
}

/// The calldata the deployer takes: the salt, then the creation code.
pub fn create2_calldata(salt: B256, initcode: &[u8]) -> Vec<u8> {
    [salt.as_slice(), initcode].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_salt_and_code_hash_give_permit2s_address() {
        assert_eq!(
            CREATE2_DEPLOYER.create2(PERMIT2_SALT, PERMIT2_INITCODE_HASH),
            PERMIT2_ADDRESS
        );
        let calldata = create2_calldata(PERMIT2_SALT, &[0x60, 0x00]);
        assert_eq!(&calldata[..32], PERMIT2_SALT.as_slice());
        assert_eq!(&calldata[32..], &[0x60, 0x00]);
    }
}
