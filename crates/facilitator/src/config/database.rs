//! `database`: where the settlement log is kept, a SQLite file or a Postgres URL, and
//! `[postgres]`, the pool settings of the latter.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::postgres::PostgresOptions;

/// Where the settlement log is kept: a SQLite file, for one process (the default,
/// `facilitator.db`), or a Postgres database (`postgres://…` or `postgresql://…`) that several
/// facilitator instances share.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A Postgres database.
    Postgres(PostgresUrl),
}

impl Database {
    /// Reads a `database` value: a `postgres://` or `postgresql://` URL (checked now: a
    /// malformed one fails here, saying what is wrong), any other URL refused, anything else
    /// a SQLite file path.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err(
                "`database` is empty: give a SQLite file path or a postgres://user@host:port/dbname URL"
                    .into(),
            );
        }
        match text.split_once("://") {
            Some(("postgres" | "postgresql", _)) => PostgresUrl::parse(text).map(Self::Postgres),
            Some((scheme, _)) => Err(format!(
                "`database`: `{scheme}://` is not a database the settlement log can be kept in; \
                 give a SQLite file path or a postgres://user@host:port/dbname URL"
            )),
            None => Ok(Self::Sqlite(PathBuf::from(text))),
        }
    }

    /// Whether the log is in Postgres.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }
}

impl From<PathBuf> for Database {
    fn from(path: PathBuf) -> Self {
        Self::Sqlite(path)
    }
}

impl std::fmt::Display for Database {
    /// The file's path, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{} (SQLite)", path.display()),
            Self::Postgres(url) => write!(f, "{url} (Postgres)"),
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(url).finish(),
        }
    }
}

impl<'de> Deserialize<'de> for Database {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A Postgres connection URL, checked when read. Shown without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// Checks `text` as a Postgres URL the log can connect with: it parses, names a host, and
    /// does not ask for TLS (the facilitator connects without it).
    pub fn parse(text: &str) -> Result<Self, String> {
        let redacted = redact(text);
        let refuse = |what: String| {
            format!(
                "`database` = \"{redacted}\" is not a usable Postgres URL: {what}; write \
                 postgres://user[:password]@host[:port]/dbname"
            )
        };
        let config = tokio_postgres::Config::from_str(text).map_err(|e| refuse(e.to_string()))?;
        if config.get_hosts().is_empty() {
            return Err(refuse("it names no host".into()));
        }
        use tokio_postgres::config::SslMode;
        if !matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer) {
            return Err(refuse(
                "it requires TLS, which the facilitator does not speak to Postgres; reach the \
                 server over a private network or a local socket, with sslmode=disable or prefer"
                    .into(),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The URL, password included: for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redact(&self.0))
    }
}

/// `url` with the password (in the user info, or a `password=` parameter) replaced by `***`.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("password", _)) => "password=***".to_owned(),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// `[postgres]`: the connection pool of a Postgres `database`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connections kept open at most (16 by default).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// How long opening a connection, or waiting for a free one, may take, in milliseconds
    /// (5000 by default). Past it the call is answered 503.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long one statement may run before the server cancels it, in milliseconds (10000 by
    /// default).
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// This instance's name among those sharing the database, recorded on the settlements it
    /// owns (letters, digits, `.`, `_`, `-`, `:`; at most 63). By default the host name,
    /// the process id and a random suffix: a restart is then a new instance, and its earlier
    /// self's settlements are taken over once that one's heartbeat is stale. Give each
    /// instance its own; one reused by two live instances lets both follow the same rows.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// How often this instance writes its heartbeat and looks for settlements of instances
    /// whose heartbeat is stale, in milliseconds (2000 by default).
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// How old another instance's heartbeat must be before this one takes over its
    /// unfinished settlements, in milliseconds (15000 by default; keep it several heartbeats).
    #[serde(default = "default_takeover_after_ms")]
    pub takeover_after_ms: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            pool_size: default_pool_size(),
            connect_timeout_ms: default_connect_timeout_ms(),
            statement_timeout_ms: default_statement_timeout_ms(),
            instance_id: None,
            heartbeat_ms: default_heartbeat_ms(),
            takeover_after_ms: default_takeover_after_ms(),
        }
    }
}

impl PostgresConfig {
    /// The pool's options.
    pub fn options(&self) -> PostgresOptions {
        PostgresOptions {
            pool_size: self.pool_size,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            statement_timeout: Duration::from_millis(self.statement_timeout_ms),
        }
    }

    /// This instance's id: the configured one, or the host name, process id and a random
    /// suffix.
    pub fn instance_id(&self) -> String {
        self.instance_id
            .clone()
            .unwrap_or_else(crate::postgres::default_instance_id)
    }

    /// How often the heartbeat is written.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// How stale another instance's heartbeat must be before its settlements are taken over.
    pub fn takeover_after(&self) -> Duration {
        Duration::from_millis(self.takeover_after_ms)
    }

    /// What is wrong with the settings, if anything.
    pub(super) fn problem(&self) -> Option<&'static str> {
        if self.pool_size == 0 {
            return Some("postgres.pool_size must be at least 1");
        }
        if self.connect_timeout_ms == 0 || self.statement_timeout_ms == 0 {
            return Some(
                "postgres.connect_timeout_ms and postgres.statement_timeout_ms must be positive",
            );
        }
        if let Some(id) = &self.instance_id
            && !crate::postgres::is_instance_id(id)
        {
            return Some(
                "postgres.instance_id must be 1 to 63 letters, digits, `.`, `_`, `-` or `:`",
            );
        }
        if self.heartbeat_ms == 0 || self.takeover_after_ms <= self.heartbeat_ms {
            return Some(
                "postgres.heartbeat_ms must be positive and postgres.takeover_after_ms longer than it",
            );
        }
        None
    }
}

fn default_pool_size() -> usize {
    PostgresOptions::default().pool_size
}
fn default_connect_timeout_ms() -> u64 {
    millis(PostgresOptions::default().connect_timeout)
}
fn default_statement_timeout_ms() -> u64 {
    millis(PostgresOptions::default().statement_timeout)
}
fn default_heartbeat_ms() -> u64 {
    2_000
}
fn default_takeover_after_ms() -> u64 {
    15_000
}
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_sqlite_and_a_postgres_url_is_checked() {
        assert_eq!(
            Database::parse("data/facilitator.db").unwrap(),
            Database::Sqlite("data/facilitator.db".into())
        );
        for url in [
            "postgres://x402:s3cret@db.internal:5433/settlements",
            "postgresql://postgres@127.0.0.1/test?application_name=f1",
        ] {
            let database = Database::parse(url).unwrap();
            assert!(database.is_postgres());
            assert!(!format!("{database} {database:?}").contains("s3cret"));
        }
        let shown = Database::parse("postgres://u:s3cret@h/db?password=other").unwrap();
        assert_eq!(
            shown.to_string(),
            "postgres://u:***@h/db?password=*** (Postgres)"
        );
        for (text, said) in [
            (
                "postgres://u:s3cret@h:notaport/db",
                "not a usable Postgres URL",
            ),
            ("postgres:///db", "names no host"),
            ("postgres://h/db?sslmode=require", "TLS"),
            ("mysql://h/db", "`mysql://`"),
            ("  ", "empty"),
        ] {
            let error = Database::parse(text).unwrap_err();
            assert!(error.contains(said), "{text}: {error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
    }
}
