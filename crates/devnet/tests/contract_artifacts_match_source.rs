//! The committed contract artifacts are compiled from the committed sources.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use x402_devnet::{
    Artifact, BATCH_SETTLEMENT_ARTIFACT, ERC3009_DEPOSIT_COLLECTOR_ARTIFACT,
    EXACT_PERMIT2_PROXY_ARTIFACT, MULTICALL3_ARTIFACT, PERMIT2_DEPOSIT_COLLECTOR_ARTIFACT,
    TOKEN_ARTIFACT, UPTO_PERMIT2_PROXY_ARTIFACT, WALLET_ARTIFACT, WALLET_FACTORY_ARTIFACT,
};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn artifacts_record_the_hash_of_their_source() {
    for (artifact, source) in [
        (TOKEN_ARTIFACT, "contracts/src/X402Token.sol"),
        (MULTICALL3_ARTIFACT, "contracts/src/Multicall3.sol"),
        (WALLET_ARTIFACT, "contracts/src/X402Wallet.sol"),
        (
            WALLET_FACTORY_ARTIFACT,
            "contracts/src/X402WalletFactory.sol",
        ),
        (
            EXACT_PERMIT2_PROXY_ARTIFACT,
            "contracts/src/X402Permit2Proxies.sol",
        ),
        (
            UPTO_PERMIT2_PROXY_ARTIFACT,
            "contracts/src/X402Permit2Proxies.sol",
        ),
        (
            BATCH_SETTLEMENT_ARTIFACT,
            "contracts/src/X402BatchSettlement.sol",
        ),
        (
            ERC3009_DEPOSIT_COLLECTOR_ARTIFACT,
            "contracts/src/X402DepositCollectors.sol",
        ),
        (
            PERMIT2_DEPOSIT_COLLECTOR_ARTIFACT,
            "contracts/src/X402DepositCollectors.sol",
        ),
    ] {
        let artifact = Artifact::parse(artifact).unwrap();
        let bytes = std::fs::read(repo_root().join(source)).unwrap();
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            artifact.source_sha256, digest,
            "{source} changed since its artifact was built: run `npm run build:contracts` in tools/"
        );
    }
}

/// Recompiles with the pinned solc-js and compares bytecode and ABI. Needs `npm install` in
/// tools/; CI always has it, so there a missing compiler is a failure, not a skip.
#[test]
fn recompiling_the_sources_gives_the_committed_artifacts() {
    let root = repo_root();
    if !root.join("tools/node_modules/solc").is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tools/node_modules/solc missing in CI: .ci/run must install tools/"
        );
        eprintln!("skipped: run `npm install` in tools/ to compare against a fresh compile");
        return;
    }
    let output = Command::new("node")
        .arg(root.join("contracts/build.mjs"))
        .arg("--check")
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "committed artifacts differ from a fresh compile:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
