//! `x402 wallet` holds one key per chain family: `new` makes an EVM and a Solana key file
//! (owner-only, never printed), `show` lists both, `import` takes a key from a file or stdin
//! and never replaces one, and `balance` shows USDC and gas on the EVM chain and USDC and SOL
//! on Solana (the local chain, its USDC found by its genesis hash).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn x402(args: &[&str], home: &Path, env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_x402"));
    command
        .args(args)
        .env("X402_HOME", home)
        .env_remove("X402_PRIVATE_KEY")
        .env_remove("X402_SOLANA_KEY")
        .env_remove("X402_SOLANA_RPC")
        .env_remove("RUST_BACKTRACE")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("x402 runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn new_makes_one_key_per_family_and_show_lists_both() {
    let home = tempfile::tempdir().unwrap();
    let out = x402(&["wallet", "new"], home.path(), &[], None);
    let evm = stdout(&out);
    assert!(evm.starts_with("0x") && evm.len() == 42, "{evm}");
    let file = home.path().join("wallet-solana.key");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key = std::fs::read_to_string(&file).unwrap();
    let printed = format!("{evm}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!printed.contains(key.trim()), "the Solana key was printed");

    let solana = stdout(&x402(
        &["wallet", "address", "--solana"],
        home.path(),
        &[],
        None,
    ));
    assert!(solana.parse::<x402_svm::Pubkey>().is_ok(), "{solana}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&solana));
    let show = stdout(&x402(&["wallet", "show"], home.path(), &[], None));
    assert_eq!(show, format!("evm    {evm}\nsolana {solana}"));

    // Neither key is ever replaced.
    assert!(
        !x402(&["wallet", "new", "--solana"], home.path(), &[], None)
            .status
            .success()
    );
    let import = x402(
        &["wallet", "import", "--solana"],
        home.path(),
        &[],
        Some(key.trim()),
    );
    assert!(!import.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_keys_show_their_balances_on_both_chains() {
    let devnet = x402_devnet::Devnet::start(x402_devnet::DevnetConfig::default())
        .await
        .expect("anvil starts");
    let solana = x402_devnet::SolanaChain::start(&x402_devnet::SolanaChainConfig::default())
        .await
        .expect("the local Solana chain starts (npm install in tools/)");
    let state = solana.state();
    let home = tempfile::tempdir().unwrap();

    // EVM from stdin; Solana from a file, with a bad key refused first.
    let evm_key = devnet.payers()[0].signer.to_bytes().to_string();
    let evm = stdout(&x402(
        &["wallet", "import"],
        home.path(),
        &[],
        Some(&evm_key),
    ));
    assert_eq!(evm, devnet.payers()[0].address.to_string());
    let key_file = home.path().join("payer.txt");
    std::fs::write(&key_file, "not a key").unwrap();
    let file_arg = key_file.to_str().unwrap();
    let bad = x402(
        &["wallet", "import", "--solana", "--file", file_arg],
        home.path(),
        &[],
        None,
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Solana secret key"));
    std::fs::write(&key_file, &state.payer_keys[1]).unwrap();
    let imported = x402(
        &["wallet", "import", "--solana", "--file", file_arg],
        home.path(),
        &[],
        None,
    );
    assert_eq!(stdout(&imported), state.payers[1]);

    let rpc = devnet.rpc_url().to_string();
    let asset = devnet.token().address.to_string();
    let balance = stdout(&x402(
        &[
            "wallet",
            "balance",
            "--rpc",
            &rpc,
            "--asset",
            &asset,
            "--solana-rpc",
            &state.rpc_url,
        ],
        home.path(),
        &[],
        None,
    ));
    let lines: Vec<&str> = balance.lines().collect();
    assert_eq!(lines.len(), 2, "{balance}");
    assert!(lines[0].starts_with(&format!("{evm}: ")), "{balance}");
    assert!(
        lines[0].contains("USDC") && lines[0].ends_with("ETH for gas"),
        "{balance}"
    );
    let funds: u64 = state.payer_funds.parse().unwrap();
    assert_eq!(
        lines[1],
        format!(
            "{}: {} USDC ({funds} atomic), 0 SOL",
            state.payers[1],
            funds / 1_000_000
        )
    );

    // Without a Solana RPC, the EVM line only (and a hint on stderr).
    let out = x402(
        &["wallet", "balance", "--rpc", &rpc, "--asset", &asset],
        home.path(),
        &[],
        None,
    );
    assert_eq!(stdout(&out).lines().count(), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--solana-rpc"));
}
