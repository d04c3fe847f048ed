//! The documented deployment (`deploy/`: three facilitators and two gateways on one Postgres)
//! cannot rot: every `command:` in `deploy/compose.yaml` is run as written, with the config
//! file the compose file mounts at its `--config` path, through the real binary's `--check`
//! (the CLI's flags and the real config loaders); both configs name the compose file's
//! Postgres service with its credentials, the gateways name the facilitators' service name,
//! and the file runs three facilitators and two gateways.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use x402_facilitator::{Database, FacilitatorConfig};
use x402_gateway::GatewayConfig;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(deploy().join(name)).unwrap()
}

/// The `command:` arrays of the compose file (written as JSON-style flow sequences) that run
/// our binary.
fn commands(compose: &str) -> Vec<Vec<String>> {
    compose
        .lines()
        .filter_map(|line| line.trim().strip_prefix("command: "))
        .map(|array| -> Vec<String> {
            serde_json::from_str(array).expect("a command is a flow sequence")
        })
        .filter(|command| command[0] == "x402")
        .collect()
}

/// The files the compose file mounts from `deploy/`: container path → file.
fn mounts(compose: &str) -> BTreeMap<String, PathBuf> {
    compose
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- ./"))
        .map(|mount| {
            let mut parts = mount.split(':');
            let (file, at) = (parts.next().unwrap(), parts.next().unwrap());
            (at.to_owned(), deploy().join(file))
        })
        .collect()
}

/// The services named `<prefix>-<n>`.
fn count(compose: &str, prefix: &str) -> usize {
    compose
        .lines()
        .filter(|line| {
            line.strip_prefix("  ")
                .and_then(|l| l.strip_prefix(prefix))
                .and_then(|l| l.strip_prefix('-'))
                .is_some_and(|l| l.trim_end_matches(':').parse::<u32>().is_ok())
        })
        .count()
}

#[test]
fn every_compose_command_checks_its_mounted_config() {
    let compose = read("compose.yaml");
    let mounts = mounts(&compose);
    let commands = commands(&compose);
    let run: Vec<&str> = commands.iter().map(|c| c[1].as_str()).collect();
    assert_eq!(run, ["facilitator", "gateway"]);
    for command in &commands {
        let at = command.iter().position(|a| a == "--config").unwrap() + 1;
        let file = &mounts[&command[at]];
        let mut args = command[1..].to_vec();
        args[at - 1] = file.display().to_string();
        args.push("--check".into());
        let out = Command::new(env!("CARGO_BIN_EXE_x402"))
            .args(&args)
            // Anvil's first two keys: the check needs keys, never their money.
            .env(
                "X402_FACILITATOR_PRIVATE_KEY",
                "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
            )
            .env(
                "X402_RECEIVER_AUTHORIZER_PRIVATE_KEY",
                "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
            )
            .env("X402_OPERATOR_TOKEN", "operator")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("config ok: "), "{stdout}");
    }
    assert_eq!(count(&compose, "facilitator"), 3, "three facilitators");
    assert_eq!(count(&compose, "gateway"), 2, "two gateways");
}

#[test]
fn both_configs_name_the_compose_database_and_the_gateways_the_facilitators() {
    let compose = read("compose.yaml");
    let credential = |key: &str| {
        let line = compose
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("compose.yaml sets no {key}"));
        line.to_owned()
    };
    let url = format!(
        "postgres://{}:{}@postgres:5432/{}",
        credential("POSTGRES_USER"),
        credential("POSTGRES_PASSWORD"),
        credential("POSTGRES_DB")
    );
    assert!(compose.contains("\n  postgres:\n"), "a postgres service");

    let facilitator = FacilitatorConfig::parse(&read("facilitator.toml"), []).unwrap();
    let Database::Postgres(given) = &facilitator.database else {
        panic!("the facilitators share Postgres: {}", facilitator.database);
    };
    assert_eq!(given.expose(), url);

    let gateway = GatewayConfig::parse(&read("gateway.toml")).unwrap();
    assert_eq!(gateway.database.as_ref().unwrap().expose(), url);
    let facilitators = gateway.facilitator.as_ref().unwrap();
    assert_eq!(facilitators.url, "http://facilitator:8402");
    assert!(compose.contains("aliases: [facilitator]"));
    assert_eq!(
        facilitators.bearer_token.as_ref().map(|t| t.expose()),
        facilitator.auth.bearer_token.as_ref().map(|t| t.expose()),
        "the gateways send the facilitators' token"
    );
}
