//! The web console at `/ui/`: server-rendered pages for operators.
//! It owns sign-in, sessions, CSRF and the console's security headers; for
//! everything else it calls the admin API's own handlers, so a page can do
//! exactly what its token may do through `/api/v1`, with the same checks and
//! the same errors. It never writes SQL and never renders a stored secret.

mod form;
mod pages;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::admin::ApiError;
use crate::error::Error;
use crate::hub::Hub;

pub use form::{Form, Values};
pub use session::{Post, Session, form_limit};

/// The console's pages: what an operator sees on each, and what a page
/// needs from its session to draw the frame around it.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The token's name.
    pub user: String,
    /// `read` or `write`.
    pub role: &'static str,
    /// The token reaches the whole hub.
    pub admin: bool,
    /// The token may change things: write buttons are drawn only then.
    pub writer: bool,
    pub csrf: String,
    /// The instance the page is about, for the instance menu.
    pub instance: Option<String>,
    /// Which menu entry is current.
    pub section: &'static str,
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// A console failure: sign in again, a refusal, or the hub's error as the
/// API would have sent it, drawn as a page.
#[derive(Debug)]
pub enum UiError {
    /// No session, or one that ended: go to the sign-in page.
    SignIn,
    /// A post without a valid form token, or by a read-only token.
    Refused(String),
    Hub(Error),
}

impl From<Error> for UiError {
    fn from(e: Error) -> Self {
        Self::Hub(e)
    }
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unauthenticated => Self::SignIn,
            ApiError::Hub(e) => Self::Hub(e),
        }
    }
}

impl From<crate::store::StoreError> for UiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Hub(e.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::SignIn => return Redirect::to("/ui/login").into_response(),
            Self::Refused(why) => (StatusCode::FORBIDDEN, why),
            Self::Hub(e) => (crate::admin::status_of(e.kind), e.detail),
        };
        let page = pages::ErrorPage {
            status: status.as_u16(),
            message,
        };
        (status, render(&page)).into_response()
    }
}

pub type UiResult<T> = Result<T, UiError>;

/// Renders a template; a template that fails to render is a bug, answered
/// as a plain 500 without detail.
pub fn render<T: askama::Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

/// A redirect after a post (303, so the browser follows with GET).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// The console's routes.
pub fn router() -> Router<Arc<Hub>> {
    use pages::*;
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(home))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/assets/{name}", get(asset))
        .route("/ui/instances", get(instances).post(create_instance))
        .route("/ui/events", get(events))
        .route("/ui/access", get(access))
        .route("/ui/access/tokens", post(create_token))
        .route("/ui/access/tokens/{id}/revoke", post(revoke_token))
        .route("/ui/access/users", post(create_user))
        .route("/ui/access/users/{id}/delete", post(delete_user))
        .route("/ui/i/{i}", get(instance).post(update_instance))
        .route("/ui/i/{i}/delete", post(delete_instance))
        .route(
            "/ui/i/{i}/ca-accounts",
            get(ca_accounts).post(create_ca_account),
        )
        .route(
            "/ui/i/{i}/ca-accounts/{id}",
            get(ca_account).post(update_ca_account),
        )
        .route("/ui/i/{i}/ca-accounts/{id}/test", post(test_ca_account))
        .route("/ui/i/{i}/ca-accounts/{id}/delete", post(delete_ca_account))
        .route(
            "/ui/i/{i}/credentials",
            get(credentials).post(create_credential),
        )
        .route(
            "/ui/i/{i}/credentials/{id}",
            get(credential).post(update_credential),
        )
        .route("/ui/i/{i}/credentials/{id}/delete", post(delete_credential))
        .route("/ui/i/{i}/dns", get(dns))
        .route("/ui/i/{i}/dns/zones", post(create_zone))
        .route("/ui/i/{i}/dns/zones/{id}/test", post(test_zone))
        .route("/ui/i/{i}/dns/zones/{id}/delete", post(delete_zone))
        .route("/ui/i/{i}/dns/delegations", post(create_delegation))
        .route(
            "/ui/i/{i}/dns/delegations/{id}/check",
            post(check_delegation),
        )
        .route(
            "/ui/i/{i}/dns/delegations/{id}/delete",
            post(delete_delegation),
        )
        .route("/ui/i/{i}/keys", get(access_keys).post(create_access_key))
        .route("/ui/i/{i}/keys/{id}/revoke", post(revoke_access_key))
        .route("/ui/i/{i}/certificates", get(certificates))
        .route("/ui/i/{i}/certificates/{id}", get(certificate))
        .route(
            "/ui/i/{i}/certificates/{id}/revoke",
            post(revoke_certificate),
        )
        .route(
            "/ui/i/{i}/certificates/{id}/chain.pem",
            get(download_certificate),
        )
        .route("/ui/i/{i}/managed", post(create_managed))
        .route("/ui/i/{i}/managed/{id}/renew", post(renew_managed))
        .route("/ui/i/{i}/orders", get(orders))
        .layer(axum::middleware::from_fn(security_headers))
}

/// The console's Content-Security-Policy: only the hub's own scripts and
/// styles, no inline code, no framing, forms post only to the hub.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// The headers on every console answer: the policy above, no framing, no
/// sniffing, no referrer, HTTPS only, and no sharing with other origins.
const SECURITY_HEADERS: [(&str, &str); 7] = [
    ("content-security-policy", CSP),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("strict-transport-security", "max-age=31536000"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let is_asset = request.uri().path().starts_with("/ui/assets/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if !is_asset {
        // Pages show tokens' work and one-time keys: never keep them in a cache.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The console's stylesheet and script, compiled in: the console works
/// without any other server.
async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.css" => (include_str!("assets/app.css"), "text/css; charset=utf-8"),
        "app.js" => (
            include_str!("assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "icon.svg" => (include_str!("assets/icon.svg"), "image/svg+xml"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
