//! The page, the sign-in form, and signing in and out.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::View;
use crate::auth::{Access, COOKIE, Operator, SESSION_SECONDS};

/// What the page's routes share.
#[derive(Clone, Debug)]
pub(crate) struct Shell {
    pub(crate) operator: Operator,
    pub(crate) view: View,
}

/// `GET /dashboard`: the dashboard for an operator, the sign-in form (401) for anyone else.
pub(crate) async fn dashboard(State(shell): State<Shell>, headers: HeaderMap) -> Response {
    match shell.operator.access(&headers) {
        Access::Denied => html(StatusCode::UNAUTHORIZED, &sign_in(shell.view.title, None)),
        Access::Bearer | Access::Cookie => html(StatusCode::OK, &page(shell.view.title)),
    }
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub(crate) struct SignIn {
    token: String,
}

/// `POST /dashboard/login`: the right token sets the session cookie and goes to the page.
pub(crate) async fn login(State(shell): State<Shell>, Form(form): Form<SignIn>) -> Response {
    if !shell.operator.is_token(form.token.trim()) {
        let message = "That is not the operator token. It is `operator_token` in the gateway's \
                       config (under `x402 dev`: in dev.json).";
        return html(
            StatusCode::UNAUTHORIZED,
            &sign_in(shell.view.title, Some(message)),
        );
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}",
        shell.operator.session()
    );
    redirect(cookie)
}

/// `POST /dashboard/logout`: forgets the session cookie.
pub(crate) async fn logout() -> Response {
    redirect(format!(
        "{COOKIE}=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0"
    ))
}

fn redirect(cookie: String) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static("/dashboard"));
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn html(status: StatusCode, body: &str) -> Response {
    let mut response = (status, Html(body.to_owned())).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · x402 dashboard</title>\n\
         <link rel=\"stylesheet\" href=\"/dashboard/assets/dashboard.css\">\n</head>\n"
    )
}

/// The dashboard page: the view's script fills `main`.
fn page(title: &str) -> String {
    format!(
        "{head}<body>\n<a class=\"skip\" href=\"#app\">Skip to content</a>\n\
         <header class=\"top\">\n<h1>{title} <span class=\"muted\">· x402 dashboard</span></h1>\n\
         <span id=\"live\" class=\"live\" role=\"status\" aria-live=\"polite\">connecting…</span>\n\
         <form method=\"post\" action=\"/dashboard/logout\"><button type=\"submit\">Sign out</button></form>\n\
         </header>\n<nav id=\"nav\" aria-label=\"Sections\"></nav>\n\
         <main id=\"app\" tabindex=\"-1\"></main>\n\
         <script src=\"/dashboard/assets/dashboard.js\"></script>\n\
         <script src=\"/dashboard/assets/view.js\"></script>\n</body>\n</html>\n",
        head = head(title)
    )
}

/// The sign-in form, with what went wrong if a token was refused.
fn sign_in(title: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(e)))
        .unwrap_or_default();
    format!(
        "{head}<body>\n<main class=\"sign-in\">\n<h1>{title} · x402 dashboard</h1>\n{error}\
         <form method=\"post\" action=\"/dashboard/login\">\n\
         <label for=\"token\">Operator token</label>\n\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\n\
         <button type=\"submit\">Sign in</button>\n</form>\n\
         <p class=\"muted\">Scripts can send the token as <code>Authorization: Bearer &lt;token&gt;</code> instead.</p>\n\
         </main>\n</body>\n</html>\n",
        head = head(title)
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
