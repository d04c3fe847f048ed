//! The operators' dashboard, as a shell any service mounts: `GET /dashboard` (the page, or a
//! sign-in form), `POST /dashboard/login` and `/dashboard/logout`, the embedded assets under
//! `/dashboard/assets/`, and the service's own JSON API under `/dashboard/api/`, which only an
//! operator reaches.
//!
//! An operator is whoever presents the operator token: as `Authorization: Bearer <token>`, or
//! through the sign-in form, which sets an HttpOnly, `SameSite=Strict` cookie holding a digest
//! of the token (never the token; it stays valid across restarts and replicas, and changing the
//! token signs everyone out). Requests that change something and are authorized by the cookie
//! must be sent as JSON, which a page on another site cannot do without the browser asking
//! first.
//!
//! The page is the same for every service: a header, a sign-out button and an empty `main`
//! that the service's [`View`] script fills in with the helpers of `dashboard.js` (charts,
//! tables, live updates), all served from this binary: no build step, nothing fetched from
//! elsewhere.

mod auth;
mod page;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use x402_proto::Secret;

pub use auth::{Access, Operator};

/// What a service shows in the shell: its title and the script that builds its page.
#[derive(Clone, Copy, Debug)]
pub struct View {
    /// The page's title ("Gateway", "Facilitator").
    pub title: &'static str,
    /// The view's JavaScript, served as `/dashboard/assets/view.js` after `dashboard.js`.
    pub script: &'static str,
}

/// The shared stylesheet.
const CSS: &str = include_str!("../assets/dashboard.css");
/// The shared helpers every view uses (`window.x402`).
const JS: &str = include_str!("../assets/dashboard.js");

/// The dashboard's routes: the page, sign-in and out, assets, and `api` (a router whose paths
/// are relative to `/dashboard/api`) behind the operator token.
pub fn routes(token: Secret, view: View, api: Router) -> Router {
    let operator = Operator::new(token);
    let api = api.route_layer(axum::middleware::from_fn_with_state(
        operator.clone(),
        auth::require,
    ));
    Router::new()
        .route("/dashboard", get(page::dashboard))
        .route("/dashboard/", get(page::dashboard))
        .route("/dashboard/login", post(page::login))
        .route("/dashboard/logout", post(page::logout))
        .with_state(page::Shell { operator, view })
        .route(
            "/dashboard/assets/dashboard.css",
            get(|| asset(CSS, "text/css")),
        )
        .route(
            "/dashboard/assets/dashboard.js",
            get(|| asset(JS, "text/javascript")),
        )
        .route(
            "/dashboard/assets/view.js",
            get(move || asset(view.script, "text/javascript")),
        )
        .nest("/dashboard/api", api)
}

async fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
