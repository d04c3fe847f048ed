//! The shell lets in the operator token (bearer or the sign-in form's cookie) and nothing else,
//! on the page and on the view's API alike; the cookie is HttpOnly and SameSite, holds no
//! token, and cannot be used by another site's form to change anything.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tower::ServiceExt;
use x402_dashboard::View;
use x402_proto::Secret;

const TOKEN: &str = "operator-token-123";
const SECRET_DATA: &str = "revenue-figure-42";

fn app() -> Router {
    let api = Router::new()
        .route("/overview", get(|| async { SECRET_DATA }))
        .route("/claim", post(|| async { "claimed" }));
    x402_dashboard::routes(
        Secret::new(TOKEN),
        View {
            title: "Test",
            script: "window.viewLoaded = true;",
        },
        api,
    )
}

async fn send(request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn get_with(path: &str, header: Option<(header::HeaderName, &str)>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    request.body(Body::empty()).unwrap()
}

async fn signed_in_cookie() -> String {
    let (status, headers, _) = send(
        Request::post("/dashboard/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={TOKEN}")))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/dashboard");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/dashboard"] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing from {cookie}"
        );
    }
    assert!(
        !cookie.contains(TOKEN),
        "the cookie holds the token: {cookie}"
    );
    cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn without_the_token_the_page_is_a_sign_in_form_and_the_api_answers_401() {
    let (status, headers, body) = send(get_with("/dashboard", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("name=\"token\""), "{body}");
    assert!(!body.contains("view.js"), "the sign-in form loads no view");
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );

    for wrong in [
        None,
        Some((header::AUTHORIZATION, "Bearer nope")),
        Some((header::COOKIE, "x402_dashboard=operator-token-123")),
        Some((header::COOKIE, "x402_dashboard=")),
    ] {
        let (status, _, body) = send(get_with("/dashboard/api/overview", wrong.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong:?}");
        assert!(!body.contains(SECRET_DATA));
        assert!(
            body.contains("Bearer"),
            "the refusal says what to send: {body}"
        );
    }
}

#[tokio::test]
async fn a_wrong_token_at_sign_in_sets_no_cookie_and_says_where_the_token_is() {
    let (status, headers, body) = send(
        Request::post("/dashboard/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("token=guess"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get(header::SET_COOKIE).is_none());
    assert!(body.contains("operator_token"), "{body}");
}

#[tokio::test]
async fn the_bearer_token_and_the_sign_in_cookie_both_reach_the_page_and_the_api() {
    let (status, _, body) = send(get_with(
        "/dashboard/api/overview",
        Some((header::AUTHORIZATION, &format!("Bearer {TOKEN}"))),
    ))
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, SECRET_DATA));

    let cookie = signed_in_cookie().await;
    let (status, _, body) = send(get_with(
        "/dashboard/api/overview",
        Some((header::COOKIE, &cookie)),
    ))
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, SECRET_DATA));
    let (status, _, page) = send(get_with("/dashboard", Some((header::COOKIE, &cookie)))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("/dashboard/assets/view.js"));
    let (status, _, script) = send(get_with("/dashboard/assets/view.js", None)).await;
    assert_eq!(
        (status, script.as_str()),
        (StatusCode::OK, "window.viewLoaded = true;")
    );
}

#[tokio::test]
async fn a_change_authorized_by_the_cookie_must_be_json() {
    let cookie = signed_in_cookie().await;
    let form_post = Request::post("/dashboard/api/claim")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("confirm=true"))
        .unwrap();
    let (status, _, body) = send(form_post).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(body.contains("application/json"));

    let json_post = Request::post("/dashboard/api/claim")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let (status, _, body) = send(json_post).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "claimed"));

    let (status, headers, _) = send(
        Request::post("/dashboard/logout")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}
