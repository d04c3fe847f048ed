//! Environment overrides of the TOML config: `X402_FACILITATOR__LIMITS__SETTLE_WAIT_MS=500`
//! sets `limits.settle_wait_ms`; `…__NETWORKS__0__RPC_URL` reaches into an array of tables.

use super::{ConfigError, ENV_PREFIX, invalid};

/// Sets the value at the `__`-separated path of `key` (after the prefix) in `table`.
pub(super) fn apply_override(
    table: &mut toml::Table,
    key: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let path: Vec<String> = key[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(invalid(format!(
            "environment override {key}: empty path segment"
        )));
    }
    // A value that reads as TOML (number, bool, array) keeps its type; anything else is a string.
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let mut cursor = table;
    for (i, segment) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        if last {
            cursor.insert(segment.clone(), parsed);
            return Ok(());
        }
        let next = path[i + 1].parse::<usize>().ok();
        let entry = cursor.entry(segment.clone()).or_insert_with(|| {
            if next.is_some() {
                toml::Value::Array(Vec::new())
            } else {
                toml::Value::Table(toml::Table::new())
            }
        });
        cursor = match (entry, next) {
            (toml::Value::Array(items), Some(index)) => {
                if index > items.len() {
                    return Err(invalid(format!(
                        "environment override {key}: index {index} skips entries (have {})",
                        items.len()
                    )));
                }
                if index == items.len() {
                    items.push(toml::Value::Table(toml::Table::new()));
                }
                match &mut items[index] {
                    toml::Value::Table(t) => {
                        // The path continues after the index.
                        return apply_rest(t, &path[i + 2..], parsed, key);
                    }
                    _ => {
                        return Err(invalid(format!(
                            "environment override {key}: {segment}[{index}] is not a table"
                        )));
                    }
                }
            }
            (toml::Value::Table(t), None) => t,
            _ => {
                return Err(invalid(format!(
                    "environment override {key}: {segment} has another type in the config"
                )));
            }
        };
    }
    Ok(())
}

fn apply_rest(
    table: &mut toml::Table,
    rest: &[String],
    value: toml::Value,
    key: &str,
) -> Result<(), ConfigError> {
    if rest.is_empty() {
        return Err(invalid(format!(
            "environment override {key}: ends at an array index; name a key inside it"
        )));
    }
    let rebuilt = format!("{ENV_PREFIX}{}", rest.join("__"));
    let rendered = match &value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    apply_override(table, &rebuilt, &rendered)
}
