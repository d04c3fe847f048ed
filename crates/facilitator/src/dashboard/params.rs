//! The dashboard API's query parameters, read strictly: anything unknown or malformed is
//! refused with what to send instead.

use alloy::primitives::{Address, B256};

use crate::store::{Search, SettlementFilter, SettlementState};

/// How many settlements a page lists unless asked otherwise.
pub(super) const DEFAULT_PER_PAGE: u32 = 25;
/// The most a page lists.
pub(super) const MAX_PER_PAGE: u32 = 200;
/// The last page that may be asked for (far past any log's end; it keeps offsets small).
const MAX_PAGE: u64 = 1_000_000;

/// A page of the settlements table, as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PageQuery {
    pub(super) page: u64,
    pub(super) per_page: u32,
    pub(super) filter: SettlementFilter,
}

/// Refuses any parameter at all (for routes that take none).
pub(super) fn none(pairs: &[(String, String)], route: &str) -> Result<(), String> {
    match pairs.first() {
        None => Ok(()),
        Some((name, _)) => Err(format!("{route} takes no parameters; remove `{name}`")),
    }
}

/// Reads `q`, `page`, `per_page` and `state`.
pub(super) fn settlements(pairs: &[(String, String)]) -> Result<PageQuery, String> {
    let mut query = PageQuery {
        page: 1,
        per_page: DEFAULT_PER_PAGE,
        filter: SettlementFilter {
            search: None,
            states: Vec::new(),
            oldest_first: false,
            offset: 0,
            limit: DEFAULT_PER_PAGE,
        },
    };
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in pairs {
        if seen.contains(&name.as_str()) {
            return Err(format!("`{name}` is given twice; give it once"));
        }
        seen.push(name);
        match name.as_str() {
            "q" => query.filter.search = search(value)?,
            "page" => {
                query.page = whole(name, value, 1, MAX_PAGE)?;
            }
            "per_page" => {
                let per_page = whole(name, value, 1, u64::from(MAX_PER_PAGE))?;
                query.per_page = u32::try_from(per_page).unwrap_or(MAX_PER_PAGE);
            }
            "state" => query.filter.states = states(value)?,
            other => {
                return Err(format!(
                    "unknown parameter `{other}`; settlements takes q, page, per_page and state"
                ));
            }
        }
    }
    query.filter.limit = query.per_page;
    query.filter.offset = (query.page - 1) * u64::from(query.per_page);
    Ok(query)
}

fn whole(name: &str, value: &str, least: u64, most: u64) -> Result<u64, String> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| (least..=most).contains(n))
        .ok_or_else(|| {
            format!("`{name}` must be a whole number from {least} to {most}, not {value:?}")
        })
}

/// `q`: an address (payer or payee), a transaction hash, or the start of either, in hex.
fn search(value: &str) -> Result<Option<Search>, String> {
    let text = value.trim().to_ascii_lowercase();
    if text.is_empty() {
        return Ok(None);
    }
    let digits = text.strip_prefix("0x").unwrap_or(&text);
    let refuse = || {
        format!(
            "`q` searches payers, payees and transaction hashes: give an address (0x + 40 hex \
             digits), a transaction hash (0x + 64) or the start of one, not {value:?}"
        )
    };
    if digits.is_empty() || digits.len() > 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refuse());
    }
    Ok(Some(match digits.len() {
        40 => Search::Address(
            format!("0x{digits}")
                .parse::<Address>()
                .map_err(|_| refuse())?,
        ),
        64 => Search::Transaction(
            format!("0x{digits}")
                .parse::<B256>()
                .map_err(|_| refuse())?,
        ),
        _ => Search::Prefix(format!("0x{digits}")),
    }))
}

/// `state`: states separated by commas; `pending` is `claimed,submitted`.
fn states(value: &str) -> Result<Vec<SettlementState>, String> {
    let mut states = Vec::new();
    for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let more = match name {
            "pending" => vec![SettlementState::Claimed, SettlementState::Submitted],
            other => vec![SettlementState::parse(other).ok_or_else(|| {
                format!(
                    "`state` {other:?} is not a state; use pending, claimed, submitted, \
                     confirmed, failed or abandoned (several separated by commas)"
                )
            })?],
        };
        for state in more {
            if !states.contains(&state) {
                states.push(state);
            }
        }
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &[(&str, &str)]) -> Vec<(String, String)> {
        text.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_page_is_read_with_its_defaults_and_bounds() {
        let query = settlements(&[]).unwrap();
        assert_eq!((query.page, query.per_page), (1, DEFAULT_PER_PAGE));
        assert_eq!(query.filter.offset, 0);
        let query = settlements(&pairs(&[("page", "3"), ("per_page", "10")])).unwrap();
        assert_eq!((query.filter.offset, query.filter.limit), (20, 10));
        let query = settlements(&pairs(&[("state", "pending, failed,claimed")])).unwrap();
        assert_eq!(
            query.filter.states,
            [
                SettlementState::Claimed,
                SettlementState::Submitted,
                SettlementState::Failed
            ]
        );
    }

    #[test]
    fn searches_are_addresses_hashes_or_hex_prefixes() {
        let address = "0x00000000000000000000000000000000000000AB";
        let hash = format!("0x{}", "cd".repeat(32));
        let read = |q: &str| settlements(&pairs(&[("q", q)])).unwrap().filter.search;
        assert_eq!(
            read(address),
            Some(Search::Address(address.parse().unwrap()))
        );
        assert_eq!(
            read(&hash),
            Some(Search::Transaction(hash.parse().unwrap()))
        );
        assert_eq!(read(" 0xABc "), Some(Search::Prefix("0xabc".into())));
        assert_eq!(read("abc"), Some(Search::Prefix("0xabc".into())));
        assert_eq!(read(""), None);
    }

    #[test]
    fn bad_parameters_say_what_to_send() {
        for (given, said) in [
            (&[("page", "0")][..], "`page` must be a whole number from 1"),
            (&[("page", "two")], "`page`"),
            (
                &[("per_page", "1000")],
                "`per_page` must be a whole number from 1 to 200",
            ),
            (&[("state", "done")], "pending, claimed, submitted"),
            (&[("q", "0xzz")], "`q` searches payers"),
            (&[("q", "'; drop table settlements")], "`q` searches payers"),
            (
                &[("q", &*format!("0x{}", "a".repeat(65)))],
                "`q` searches payers",
            ),
            (&[("pag", "2")], "unknown parameter `pag`"),
            (&[("page", "1"), ("page", "2")], "given twice"),
        ] {
            let error = settlements(&pairs(given)).unwrap_err();
            assert!(error.contains(said), "{given:?}: {error}");
        }
        assert!(
            none(&pairs(&[("x", "1")]), "overview")
                .unwrap_err()
                .contains("`x`")
        );
        assert!(none(&[], "overview").is_ok());
    }
}
