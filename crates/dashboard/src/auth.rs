//! Who is an operator: the bearer token, or the session cookie the sign-in form sets.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};
use x402_proto::Secret;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "x402_dashboard";

/// How long a signed-in browser stays signed in, in seconds.
pub(crate) const SESSION_SECONDS: u32 = 12 * 60 * 60;

/// The operator token and the session value derived from it.
#[derive(Clone)]
pub struct Operator {
    token: Arc<Secret>,
    session: Arc<str>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Operator { .. }")
    }
}

/// How a request was authorized, if it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// The session cookie of the sign-in form.
    Cookie,
    /// Neither: no data for this request.
    Denied,
}

impl Operator {
    /// The operator whose token is `token`.
    pub fn new(token: Secret) -> Self {
        let mut digest = Sha256::new();
        digest.update(b"x402-dashboard-session\0");
        digest.update(token.expose().as_bytes());
        let session: String = digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            token: Arc::new(token),
            session: session.into(),
        }
    }

    /// Whether `given` is the token (compared in constant time).
    pub fn is_token(&self, given: &str) -> bool {
        constant_time_eq(given.as_bytes(), self.token.expose().as_bytes())
    }

    /// The cookie value of a signed-in browser.
    pub(crate) fn session(&self) -> &str {
        &self.session
    }

    /// How `headers` authorize their request.
    pub fn access(&self, headers: &HeaderMap) -> Access {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(given) = bearer {
            // A wrong bearer token is refused even when a good cookie comes with it.
            return if self.is_token(given) {
                Access::Bearer
            } else {
                Access::Denied
            };
        }
        let signed_in = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| {
                name == COOKIE && constant_time_eq(value.as_bytes(), self.session.as_bytes())
            });
        if signed_in {
            Access::Cookie
        } else {
            Access::Denied
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The API's gate: 401 without the token; 415 for a change authorized by the cookie that is
/// not sent as JSON (a form posted from another site).
pub(crate) async fn require(
    State(operator): State<Operator>,
    request: Request,
    next: Next,
) -> Response {
    match operator.access(request.headers()) {
        Access::Denied => (
            StatusCode::UNAUTHORIZED,
            Json(json!({
                "error": "sign in at /dashboard, or send the operator token as `Authorization: Bearer <token>`"
            })),
        )
            .into_response(),
        Access::Cookie if !is_safe(request.method()) && !is_json(request.headers()) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Json(json!({"error": "send changes as JSON (`Content-Type: application/json`)"})),
        )
            .into_response(),
        Access::Bearer | Access::Cookie => next.run(request).await,
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_token_or_its_session_cookie_and_nothing_else() {
        let operator = Operator::new(Secret::new("s3cret"));
        let session = operator.session().to_owned();
        assert_ne!(session, "s3cret", "the cookie never holds the token");
        let (signed_in, with_token, other_cookie, session_cookie) = (
            format!("a=b; {COOKIE}={session}"),
            format!("{COOKIE}=s3cret"),
            format!("other={session}"),
            format!("{COOKIE}={session}"),
        );
        let cases = [
            (
                vec![(header::AUTHORIZATION, "Bearer s3cret")],
                Access::Bearer,
            ),
            (
                vec![(header::AUTHORIZATION, "Bearer s3cre")],
                Access::Denied,
            ),
            (vec![(header::AUTHORIZATION, "s3cret")], Access::Denied),
            (vec![(header::COOKIE, signed_in.as_str())], Access::Cookie),
            (vec![(header::COOKIE, with_token.as_str())], Access::Denied),
            (
                vec![(header::COOKIE, other_cookie.as_str())],
                Access::Denied,
            ),
            (
                vec![
                    (header::AUTHORIZATION, "Bearer wrong"),
                    (header::COOKIE, session_cookie.as_str()),
                ],
                Access::Denied,
            ),
            (vec![], Access::Denied),
        ];
        for (given, expected) in cases {
            assert_eq!(operator.access(&headers(&given)), expected, "{given:?}");
        }
    }

    #[test]
    fn another_token_makes_another_session() {
        let a = Operator::new(Secret::new("one"));
        let b = Operator::new(Secret::new("two"));
        assert_ne!(a.session(), b.session());
        assert_eq!(a.session(), Operator::new(Secret::new("one")).session());
    }
}
