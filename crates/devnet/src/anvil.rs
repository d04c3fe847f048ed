//! Finding and starting anvil.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::DevnetError;

const NPM_ANVIL: &str = "tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

/// The anvil binary: `$X402_ANVIL`, else `tools/node_modules/...` in this directory or any
/// parent (of the working directory or of this crate), else `anvil` on `PATH`.
pub fn find_anvil() -> Result<PathBuf, DevnetError> {
    if let Some(path) = std::env::var_os("X402_ANVIL") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(DevnetError::AnvilNotFound(format!(
                "X402_ANVIL points at {}, which is not a file",
                path.display()
            )))
        };
    }
    let starts = [
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    for start in starts.iter().flatten() {
        for dir in start.ancestors() {
            let candidate = dir.join(NPM_ANVIL);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("anvil");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(DevnetError::AnvilNotFound(
        "run `npm install` in tools/ (it installs @foundry-rs/anvil), or set X402_ANVIL".into(),
    ))
}

/// A running anvil. It is killed when this is dropped.
#[derive(Debug)]
pub struct AnvilProcess {
    child: Child,
    port: u16,
    private_keys: Vec<String>,
}

impl AnvilProcess {
    /// Starts `anvil` on 127.0.0.1 with a free port and reads the port and the dev accounts'
    /// keys from what it prints.
    pub async fn start(binary: &Path, chain_id: u64, accounts: u32) -> Result<Self, DevnetError> {
        let mut child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--chain-id", &chain_id.to_string()])
            .args(["--accounts", &accounts.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| DevnetError::Spawn(format!("{}: {e}", binary.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| DevnetError::Spawn("anvil stdout not captured".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut private_keys = Vec::new();
        let mut in_keys = false;
        let read_banner = async {
            while let Some(line) = lines.next_line().await? {
                let line = line.trim();
                if line.starts_with("Private Keys") {
                    in_keys = true;
                } else if in_keys && line.starts_with('(') {
                    if let Some(key) = line.split_whitespace().nth(1) {
                        private_keys.push(key.to_owned());
                    }
                } else if in_keys && !line.starts_with('=') && !line.is_empty() {
                    in_keys = false;
                }
                if let Some(addr) = line.strip_prefix("Listening on ") {
                    return Ok::<_, std::io::Error>(
                        addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()),
                    );
                }
            }
            Ok(None)
        };
        let port = tokio::time::timeout(Duration::from_secs(30), read_banner)
            .await
            .map_err(|_| {
                DevnetError::Spawn("anvil did not say where it listens within 30 s".into())
            })?
            .map_err(|e| DevnetError::Spawn(format!("reading anvil output: {e}")))?
            .ok_or_else(|| DevnetError::Spawn("anvil exited before listening".into()))?;
        // anvil logs every RPC call to stdout; keep draining it so it never blocks.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::trace!(target: "anvil", "{line}");
            }
        });
        if private_keys.len() < accounts as usize {
            return Err(DevnetError::Spawn(format!(
                "anvil printed {} private keys, expected {accounts}",
                private_keys.len()
            )));
        }
        Ok(Self {
            child,
            port,
            private_keys,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The dev accounts' private keys, as anvil printed them.
    pub fn private_keys(&self) -> &[String] {
        &self.private_keys
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops it and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
