//! Child processes in tests: killed when dropped, and the address they announce.

/// A child process killed (and reaped) when dropped.
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `command` with its stdout piped and waits (off the async workers) for its first
/// line, which must start with `prefix`: the child, killed on drop, and the rest of the line.
pub async fn spawn_announcing(
    mut command: std::process::Command,
    prefix: &'static str,
) -> (KillOnDrop, String) {
    use std::io::BufRead;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("the child process starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let child = KillOnDrop(child);
    let rest = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the child writes a line");
        line.trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected a line starting {prefix:?}, got {line:?}"))
            .to_owned()
    })
    .await
    .expect("the reader finishes");
    (child, rest)
}
