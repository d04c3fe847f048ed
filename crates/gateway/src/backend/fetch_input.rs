//! Inputs given by URL (`audio_url`, `image_url`): `data:` URLs always; `http` and `https`
//! URLs only to hosts the operator lists in `[inputs] allowed_hosts`, within a size and a time
//! limit.
//!
//! A host name is resolved first and every address it resolves to is checked: loopback,
//! private, link-local, unspecified and other non-public addresses are refused unless the
//! operator listed that address (or a network holding it). The request then goes to the
//! checked address only (the name is not resolved again), so a name that changes its answer
//! between the check and the connection (DNS rebinding) reaches nothing unchecked. A redirect
//! is followed (at most [`MAX_REDIRECTS`]) only to a URL that passes the same checks, never
//! from `https` down to `http`. `https` servers are verified against the system's roots plus
//! any the operator adds (`[inputs] extra_root_certificates`). Every refusal is a 400 before
//! payment that says why.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use x402_paywall::Rejection;

use super::input::bad;

/// `[inputs]`: where inputs given by URL may be fetched from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputsConfig {
    /// Hosts `http` URLs may name: host names (`media.example.com`), a name with all its
    /// subdomains (`*.example.com`), IP addresses or networks (`127.0.0.1`, `10.1.0.0/16`).
    /// An address that is not public (loopback, private, link-local, …) is fetched only when
    /// listed here as an address or network. Empty (the default): only `data:` URLs.
    pub allowed_hosts: Vec<String>,
    /// Largest file fetched (default 25 MiB).
    pub max_bytes: usize,
    /// Longest a fetch may take, resolving and redirects included (default 20 000 ms).
    pub timeout_ms: u64,
    /// A PEM file of certificates trusted as roots for `https` inputs, besides the system's
    /// (an internal CA). Unset (the default): the system's roots only.
    pub extra_root_certificates: Option<PathBuf>,
}

impl Default for InputsConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            max_bytes: 25 * 1024 * 1024,
            timeout_ms: 20_000,
            extra_root_certificates: None,
        }
    }
}

/// One entry of `allowed_hosts`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostRule {
    /// Exactly this host name (lowercase).
    Name(String),
    /// This domain and its subdomains (`*.example.com` → `example.com`).
    Domain(String),
    /// An address or network.
    Net(IpNet),
}

/// An IP network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim_matches(['[', ']']).parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Self { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What kind of non-public address `ip` is, or `None` for a public one.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(if ip.is_unspecified() || a == 0 {
        "unspecified (\"this network\")"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if a == 100 && (64..128).contains(&b) {
        "shared (carrier-grade NAT)"
    } else if ip.is_broadcast() {
        "broadcast"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_documentation() {
        "documentation"
    } else if a == 198 && (b == 18 || b == 19) {
        "benchmarking"
    } else if a == 192 && b == 0 && c == 0 {
        "IETF protocol assignments"
    } else if a >= 240 {
        "reserved"
    } else {
        return None;
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if first & 0xfe00 == 0xfc00 {
        "unique local (private)"
    } else if first & 0xffc0 == 0xfe80 {
        "link-local"
    } else if first & 0xffc0 == 0xfec0 {
        "site-local (private)"
    } else if ip.is_multicast() {
        "multicast"
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        "documentation"
    } else if first == 0x0064 && ip.segments()[1] == 0xff9b {
        "NAT64"
    } else if ip.segments()[..5] == [0; 5] && ip.segments()[5] == 0 {
        // IPv4-compatible (deprecated) addresses.
        "IPv4-compatible (deprecated)"
    } else {
        return None;
    })
}

fn parse_rule(entry: &str) -> Result<HostRule, String> {
    let text = entry.trim();
    if text.is_empty() {
        return Err("an empty entry".into());
    }
    if text.contains("://") || text.contains('/') && IpNet::parse(text).is_none() {
        return Err(format!(
            "{entry:?} is not a host: list host names, addresses or networks (\"media.example.com\", \"*.example.com\", \"127.0.0.1\", \"10.0.0.0/8\"), not URLs"
        ));
    }
    if let Some(net) = IpNet::parse(text) {
        return Ok(HostRule::Net(net));
    }
    if text.contains(':') {
        return Err(format!(
            "{entry:?}: list the host without a port (any port of an allowed host is allowed)"
        ));
    }
    let (wildcard, name) = match text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{entry:?} is not a host name (letters, digits, hyphens and dots; \"*.\" before a domain allows its subdomains)"
        ));
    }
    Ok(if wildcard {
        HostRule::Domain(name)
    } else {
        HostRule::Name(name)
    })
}

/// A fetched input.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The media type the URL declared, if any.
    pub media_type: Option<String>,
}

/// The most redirects followed for one input.
pub const MAX_REDIRECTS: usize = 5;

/// Fetches inputs given by URL, as the operator's `[inputs]` allows.
#[derive(Clone)]
pub struct InputFetcher {
    rules: Vec<HostRule>,
    max_bytes: usize,
    timeout: Duration,
    /// Roots trusted for `https` besides the system's.
    extra_roots: Arc<[reqwest::Certificate]>,
}

impl std::fmt::Debug for InputFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputFetcher")
            .field("rules", &self.rules)
            .field("max_bytes", &self.max_bytes)
            .field("timeout", &self.timeout)
            .field("extra_roots", &self.extra_roots.len())
            .finish()
    }
}

/// The certificates of the PEM file at `path`; `Err` says what is wrong with it.
fn read_roots(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if roots.is_empty() {
        return Err(format!(
            "{} holds no certificate (expected PEM blocks \"BEGIN CERTIFICATE\")",
            path.display()
        ));
    }
    Ok(roots)
}

impl InputFetcher {
    /// The fetcher `config` describes; `Err` names the entry to fix.
    pub fn new(config: &InputsConfig) -> Result<Self, crate::config::ConfigError> {
        let rules = config
            .allowed_hosts
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                parse_rule(entry).map_err(|message| crate::config::ConfigError::Invalid {
                    key: format!("inputs.allowed_hosts[{i}]"),
                    message,
                })
            })
            .collect::<Result<_, _>>()?;
        if config.max_bytes == 0 || config.timeout_ms == 0 {
            return Err(crate::config::ConfigError::Invalid {
                key: "inputs".into(),
                message: "max_bytes and timeout_ms must be positive".into(),
            });
        }
        let extra_roots = match &config.extra_root_certificates {
            None => Vec::new(),
            Some(path) => {
                read_roots(path).map_err(|message| crate::config::ConfigError::Invalid {
                    key: "inputs.extra_root_certificates".into(),
                    message,
                })?
            }
        };
        Ok(Self {
            rules,
            max_bytes: config.max_bytes,
            timeout: Duration::from_millis(config.timeout_ms),
            extra_roots: extra_roots.into(),
        })
    }

    /// Largest input fetched.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ip = host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .ok()
            .map(canonical);
        self.rules.iter().any(|rule| match (rule, ip) {
            (HostRule::Net(net), Some(ip)) => net.contains(ip),
            (HostRule::Name(name), None) => *name == host,
            (HostRule::Domain(domain), None) => {
                host == *domain || host.ends_with(&format!(".{domain}"))
            }
            _ => false,
        })
    }

    /// Whether `ip` may be connected to: public, or listed as an address or network.
    fn address_allowed(&self, ip: IpAddr) -> Result<(), String> {
        match non_public(ip) {
            None => Ok(()),
            Some(_)
                if self
                    .rules
                    .iter()
                    .any(|r| matches!(r, HostRule::Net(net) if net.contains(ip))) =>
            {
                Ok(())
            }
            Some(kind) => Err(format!(
                "{ip} is a {kind} address; this gateway fetches such addresses only when its operator lists them in [inputs] allowed_hosts"
            )),
        }
    }

    /// Checks `url` and names the addresses it may be fetched from: every address its host
    /// resolves to, each allowed. `Err` says why not.
    fn checked_addresses(&self, url: &reqwest::Url) -> Result<Vec<SocketAddr>, String> {
        let host = url.host_str().unwrap_or_default();
        if !self.host_allowed(host) {
            return Err(if self.rules.is_empty() {
                "this gateway fetches no http(s) URLs (its operator allows no hosts); send the file as a data: URL or in base64".to_owned()
            } else {
                format!(
                    "host {host:?} is not one this gateway fetches from (its operator allows: {}); send the file as a data: URL or in base64",
                    self.allowed_list()
                )
            });
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let literal = host.trim_matches(['[', ']']).parse::<IpAddr>().ok();
        let addresses: Vec<SocketAddr> = match literal {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => (host, port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
                .collect(),
        };
        if addresses.is_empty() {
            return Err(format!("{host:?} resolves to no address"));
        }
        for address in &addresses {
            self.address_allowed(address.ip())
                .map_err(|why| format!("{host:?} resolves to {why}"))?;
        }
        Ok(addresses)
    }

    fn allowed_list(&self) -> String {
        self.rules
            .iter()
            .map(|rule| match rule {
                HostRule::Name(name) => name.clone(),
                HostRule::Domain(domain) => format!("*.{domain}"),
                HostRule::Net(net) => format!("{}/{}", net.addr, net.prefix),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Fetches `url` (the value of `input.field`): a `data:` URL is decoded; an `http` or
    /// `https` URL is fetched if allowed. Blocks the calling thread up to the time limit (call it off the
    /// async workers). Every refusal is a 400 that names `field` and says why.
    pub fn fetch(&self, url: &str, field: &str) -> Result<Fetched, Rejection> {
        let refuse = |why: String| bad(format!("input.{field} is refused: {why}"));
        let trimmed = url.trim();
        if trimmed
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case("data:"))
        {
            return data_url(&trimmed[5..], self.max_bytes).map_err(refuse);
        }
        let parsed =
            reqwest::Url::parse(trimmed).map_err(|e| refuse(format!("not a URL ({e})")))?;
        match parsed.scheme() {
            "http" | "https" => {}
            other => {
                return Err(refuse(format!(
                    "the {other}: scheme is not fetched; use a data: URL (or an http(s) URL to a host the operator allows)"
                )));
            }
        }
        let fetcher = self.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        // Resolving and fetching run on a thread of their own, bounded by the time limit: the
        // caller may be on an async worker, and a resolver may hang.
        std::thread::Builder::new()
            .name("input-fetch".into())
            .spawn(move || {
                let _ = tx.send(fetcher.fetch_http(parsed));
            })
            .map_err(|e| refuse(format!("cannot start fetching: {e}")))?;
        match rx.recv_timeout(self.timeout + Duration::from_millis(200)) {
            Ok(result) => result.map_err(refuse),
            Err(_) => Err(refuse(format!(
                "fetching it took longer than {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    /// Fetches `url`, following redirects that pass the same checks (blocking; runs on a
    /// thread of its own).
    fn fetch_http(&self, url: reqwest::Url) -> Result<Fetched, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot fetch: {e}"))?;
        runtime.block_on(async move {
            let mut url = url;
            let mut redirects = 0;
            loop {
                let response = self.get_once(&url).await?;
                let status = response.status();
                if !status.is_redirection() {
                    return self.read_body(response).await;
                }
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| format!("{url} answered {status} without a Location"))?;
                let next = url
                    .join(location)
                    .map_err(|e| format!("{url} redirected to {location:?}, not a URL ({e})"))?;
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(format!(
                        "it redirected more than {MAX_REDIRECTS} times; give the final URL"
                    ));
                }
                match (url.scheme(), next.scheme()) {
                    ("https", "http") => {
                        return Err(format!(
                            "it redirected from https to http ({next}), which is not followed"
                        ));
                    }
                    (_, "http" | "https") => {}
                    (_, other) => {
                        return Err(format!(
                            "it redirected to a {other}: URL, which is not followed"
                        ));
                    }
                }
                // The next URL is checked as the first was, before any request to it.
                self.checked_addresses(&next)
                    .map_err(|why| format!("it redirected to {next}, which is refused: {why}"))?;
                url = next;
            }
        })
    }

    /// One GET of `url`, checked first and sent to its checked addresses only, redirects not
    /// followed.
    async fn get_once(&self, url: &reqwest::Url) -> Result<reqwest::Response, String> {
        let addresses = self.checked_addresses(url)?;
        let host = url.host_str().unwrap_or_default().to_owned();
        // The name resolves to the checked addresses only; no proxy from the environment.
        let mut client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .tls_certs_merge(self.extra_roots.iter().cloned());
        if url.domain().is_some() {
            client = client.resolve_to_addrs(&host, &addresses);
        }
        let client = client.build().map_err(|e| format!("cannot fetch: {e}"))?;
        client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| format!("fetching {url} failed: {}", error_chain(&e)))
    }

    /// The body of a response that is not a redirect, within the size limit.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Fetched, String> {
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{} answered {status}", response.url()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(format!(
                "it is {} bytes; at most {} bytes are fetched",
                response.content_length().unwrap_or_default(),
                self.max_bytes
            ));
        }
        let media_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading it failed: {}", error_chain(&e)))?
        {
            if bytes.len() + chunk.len() > self.max_bytes {
                return Err(format!(
                    "it is larger than {} bytes, the most that is fetched",
                    self.max_bytes
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched { bytes, media_type })
    }
}

/// An error and its causes, `: `-separated (a TLS failure's reason is in its sources).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// Decodes the part of a `data:` URL after `data:`.
fn data_url(rest: &str, max_bytes: usize) -> Result<Fetched, String> {
    let (meta, payload) = rest
        .split_once(',')
        .ok_or("a data: URL needs a comma before its data (data:audio/wav;base64,…)")?;
    let mut params = meta.split(';');
    let media_type = params
        .next()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned);
    let base64 = params.any(|p| p.trim().eq_ignore_ascii_case("base64"));
    // Decoded data is at most this long: refuse before decoding what cannot fit.
    let bound = if base64 {
        payload.len() / 4 * 3
    } else {
        payload.len()
    };
    if bound > max_bytes.saturating_mul(4) / 3 + 4 {
        return Err(format!("its data is larger than {max_bytes} bytes"));
    }
    let bytes = if base64 {
        let clean: String = payload
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(clean.trim_end_matches('='))
            .map_err(|e| format!("its base64 data is invalid: {e}"))?
    } else {
        percent_decode(payload)?
    };
    if bytes.len() > max_bytes {
        return Err(format!(
            "its data is {} bytes; at most {max_bytes}",
            bytes.len()
        ));
    }
    Ok(Fetched { bytes, media_type })
}

fn percent_decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("its data has a bad percent escape")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetcher(hosts: &[&str]) -> InputFetcher {
        InputFetcher::new(&InputsConfig {
            allowed_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            ..InputsConfig::default()
        })
        .unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_named_and_public_ones_pass() {
        for (address, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.200.0.9", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("100.64.0.1", "shared"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("240.0.0.1", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd00::1", "unique local"),
            ("fc00::1", "unique local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("ff02::1", "multicast"),
            ("64:ff9b::a00:1", "NAT64"),
        ] {
            let named = non_public(ip(address));
            assert!(
                named.is_some_and(|k| k.contains(kind)),
                "{address}: {named:?}"
            );
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert_eq!(non_public(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn listing_an_address_or_network_allows_it_and_nothing_else() {
        let open = fetcher(&["127.0.0.1", "10.1.0.0/16", "files.example.com"]);
        assert!(open.address_allowed(ip("127.0.0.1")).is_ok());
        assert!(open.address_allowed(ip("::ffff:127.0.0.1")).is_ok());
        assert!(open.address_allowed(ip("10.1.200.3")).is_ok());
        let refused = open.address_allowed(ip("10.2.0.1")).unwrap_err();
        assert!(refused.contains("private"), "{refused}");
        assert!(open.address_allowed(ip("127.0.0.2")).is_err());
        assert!(open.address_allowed(ip("169.254.169.254")).is_err());
        assert!(open.address_allowed(ip("93.184.216.34")).is_ok());
        // A listed host name does not make its non-public addresses fetchable.
        assert!(
            fetcher(&["localhost"])
                .address_allowed(ip("127.0.0.1"))
                .is_err()
        );
    }

    #[test]
    fn hosts_match_names_domains_and_addresses() {
        let f = fetcher(&["Media.Example.com", "*.cdn.test", "127.0.0.1", "fd00::/8"]);
        assert!(f.host_allowed("media.example.com"));
        assert!(f.host_allowed("MEDIA.EXAMPLE.COM."));
        assert!(!f.host_allowed("evil-media.example.com"));
        assert!(!f.host_allowed("media.example.com.evil.test"));
        assert!(f.host_allowed("a.b.cdn.test"));
        assert!(f.host_allowed("cdn.test"));
        assert!(!f.host_allowed("xcdn.test"));
        assert!(f.host_allowed("127.0.0.1"));
        assert!(f.host_allowed("[fd00::5]"));
        assert!(!f.host_allowed("127.0.0.2"));
        assert!(!fetcher(&[]).host_allowed("media.example.com"));
    }

    #[test]
    fn typos_in_the_allowed_hosts_fail_at_start_naming_the_entry() {
        for (entry, says) in [
            ("http://media.example.com", "not URLs"),
            ("media.example.com/audio", "not URLs"),
            ("media.example.com:8080", "without a port"),
            ("10.0.0.0/33", "not URLs"),
            ("", "empty"),
            ("exa mple.com", "not a host name"),
            ("-bad.com", "not a host name"),
            ("*.", "not a host name"),
        ] {
            let error = InputFetcher::new(&InputsConfig {
                allowed_hosts: vec!["ok.example.com".into(), entry.into()],
                ..InputsConfig::default()
            })
            .unwrap_err();
            let text = error.to_string();
            assert!(
                text.contains("inputs.allowed_hosts[1]") && text.contains(says),
                "{entry:?}: {text}"
            );
        }
    }

    fn refusal(result: Result<Fetched, Rejection>) -> String {
        let rejection = result.unwrap_err();
        assert_eq!(rejection.status, http::StatusCode::BAD_REQUEST);
        rejection.body["error"].as_str().unwrap().to_owned()
    }

    #[test]
    fn data_urls_decode_and_bad_ones_say_why() {
        let f = fetcher(&[]);
        let got = f
            .fetch("data:audio/wav;base64,UklGRg==", "audio_url")
            .unwrap();
        assert_eq!(got.bytes, b"RIFF");
        assert_eq!(got.media_type.as_deref(), Some("audio/wav"));
        assert_eq!(f.fetch("DATA:,a%20b", "x").unwrap().bytes, b"a b");
        assert!(refusal(f.fetch("data:audio/wav;base64", "audio_url")).contains("comma"));
        assert!(refusal(f.fetch("data:;base64,!!!", "audio_url")).contains("base64"));
        let small = InputFetcher {
            max_bytes: 3,
            ..fetcher(&[])
        };
        assert!(refusal(small.fetch("data:;base64,UklGRg==", "audio_url")).contains("at most 3"));
    }

    #[test]
    fn urls_to_hosts_not_listed_or_to_private_addresses_are_refused_without_a_request() {
        let none = fetcher(&[]);
        let why = refusal(none.fetch("http://10.0.0.1/a.wav", "audio_url"));
        assert!(
            why.contains("input.audio_url") && why.contains("allows no hosts"),
            "{why}"
        );
        let some = fetcher(&["files.example.com", "localhost"]);
        let why = refusal(some.fetch("http://169.254.169.254/latest", "image_url"));
        assert!(why.contains("files.example.com"), "{why}");
        // localhost is listed by name but resolves to loopback, which is not listed.
        let why = refusal(some.fetch("http://localhost:9/a.wav", "audio_url"));
        assert!(why.contains("loopback"), "{why}");
        let why = refusal(some.fetch("https://localhost:9/a.wav", "audio_url"));
        assert!(why.contains("loopback"), "{why}");
        let why = refusal(some.fetch("https://10.0.0.1/a.wav", "audio_url"));
        assert!(why.contains("files.example.com"), "{why}");
        let why = refusal(some.fetch("file:///etc/passwd", "audio_url"));
        assert!(why.contains("file: scheme"), "{why}");
        let why = refusal(some.fetch("not a url", "audio_url"));
        assert!(why.contains("not a URL"), "{why}");
    }
}
