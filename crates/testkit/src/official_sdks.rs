//! Where the official x402 SDKs that interop tests run against are installed.

use std::path::PathBuf;

/// This workspace's `tools/` folder, where `scripts/install-tools.sh` installs the official
/// SDKs and the interop scripts live; panics saying how to install them when `package`
/// (`@x402/express`) is not installed there.
pub fn official_sdks(package: &str) -> PathBuf {
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools");
    assert!(
        tools.join("node_modules").join(package).exists(),
        "the official SDK {package} is not installed: run scripts/install-tools.sh"
    );
    tools
}
