//! The ACME front end (Boulder's WFE): routes, JWS authentication, nonces,
//! resource rendering and problem documents. It parses and renders; every
//! decision and state change belongs to `orders`.

pub mod auth;
pub mod handlers;
pub mod problem;
pub mod resources;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::Error;
use crate::hub::Hub;
pub use problem::AcmeError;

/// The ACME routes, under `/acme/{instance}/`.
pub fn router(hub: Arc<Hub>) -> Router<Arc<Hub>> {
    use handlers::*;
    let max_body = hub.config.acme.max_body_bytes;
    Router::new()
        .route("/acme/{instance}/directory", get(directory))
        .route("/acme/{instance}/new-nonce", get(new_nonce).head(new_nonce))
        .route("/acme/{instance}/new-account", post(new_account))
        .route("/acme/{instance}/account/{id}", post(account))
        .route("/acme/{instance}/account/{id}/orders", post(account_orders))
        .route("/acme/{instance}/new-order", post(new_order))
        .route("/acme/{instance}/order/{id}", post(order))
        .route("/acme/{instance}/order/{id}/finalize", post(finalize))
        .route("/acme/{instance}/authz/{id}", post(authorization))
        .route("/acme/{instance}/chall/{id}", post(challenge))
        .route("/acme/{instance}/cert/{id}", post(certificate))
        .route("/acme/{instance}/cert/{id}/{alt}", post(certificate))
        .route("/acme/{instance}/revoke-cert", post(revoke_cert))
        .route("/acme/{instance}/key-change", post(key_change))
        .route("/acme/{instance}/renewal-info/{id}", get(renewal_info))
        .layer(axum::middleware::from_fn_with_state(hub, acme_headers))
        .layer(DefaultBodyLimit::max(max_body))
        .route("/ca/crl", get(crl))
        .route("/ca/root.pem", get(root))
}

/// Every ACME response carries a fresh Replay-Nonce (RFC 8555 §6.5), a link
/// to the directory (§7.1) and is never cached.
async fn acme_headers(State(hub): State<Arc<Hub>>, request: Request, next: Next) -> Response {
    let instance = instance_in(request.uri().path()).to_string();
    let mut response = next.run(request).await;
    decorate(&hub, &instance, &mut response);
    response
}

/// A request to an ACME path refused before it reached its handler (the
/// listener's body limits), answered as any ACME error is: a problem
/// document with a fresh nonce.
pub fn refusal(hub: &Hub, path: &str, error: Error) -> Response {
    let mut response = AcmeError(error).into_response();
    decorate(hub, instance_in(path), &mut response);
    response
}

/// The instance named in an `/acme/{instance}/...` path.
fn instance_in(path: &str) -> &str {
    path.strip_prefix("/acme/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
}

fn decorate(hub: &Hub, instance: &str, response: &mut Response) {
    let headers = response.headers_mut();
    if let Ok(nonce) = HeaderValue::from_str(&hub.nonces.issue()) {
        headers.insert("replay-nonce", nonce);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(index) =
        HeaderValue::from_str(&format!("<{}>;rel=\"index\"", hub.directory_url(instance)))
    {
        headers.append(header::LINK, index);
    }
}
