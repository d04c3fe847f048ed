//! [`Secret`]: a credential that never shows in logs or `Debug` output.

use std::fmt;

use serde::Deserialize;

/// A credential (a bearer token, an API key). Its `Debug` and `Display` print `<redacted>`;
/// [`Secret::expose`] is the one way to read it, so every use is visible in the code.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself, to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty (a configuration mistake).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_and_reads_from_config_as_a_string() {
        #[derive(Debug, Deserialize)]
        struct Config {
            token: Option<Secret>,
        }
        let config: Config = serde_json::from_str(r#"{"token": "s3cret"}"#).unwrap();
        let printed = format!("{config:?} {}", config.token.as_ref().unwrap());
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("<redacted>"));
        assert_eq!(config.token.unwrap().expose(), "s3cret");
    }
}
