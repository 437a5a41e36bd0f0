//! The admin REST API under `/api/v1`: JSON in and out, bearer tokens, and an
//! OpenAPI 3.1 document generated from the same route table. Handlers parse,
//! call a domain function (`tenancy`, `dns`, `issuance`, `orders`, `managed`), and render views;
//! they never write SQL and never return a secret except the one-time key or
//! token a create call hands out.

pub mod auth;
pub mod cli;
pub(crate) mod dns;
pub(crate) mod handlers;
pub(crate) mod inventory;
pub(crate) mod managed;
pub(crate) mod notify;
pub(crate) mod relay;
pub mod views;

use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Error, ErrorKind};
use crate::hub::Hub;

/// An admin API failure as sent: `{"error": "...", "field": "..."}`.
#[derive(Debug)]
pub enum ApiError {
    /// No valid token. Deliberately without a reason.
    Unauthenticated,
    Hub(Error),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self::Hub(e)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Hub(e.into())
    }
}

/// The HTTP status an admin API error is answered with.
pub(crate) fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound | ErrorKind::AccountDoesNotExist => StatusCode::NOT_FOUND,
        ErrorKind::Conflict | ErrorKind::AlreadyRevoked => StatusCode::CONFLICT,
        ErrorKind::Unauthorized => StatusCode::FORBIDDEN,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::ServerInternal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthenticated => {
                let mut response = (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(serde_json::json!({"error": "unauthorized"})),
                )
                    .into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"acmehub\""),
                );
                response
            }
            Self::Hub(e) => {
                let mut body = serde_json::json!({"error": e.detail});
                if let Some(field) = &e.field {
                    body["field"] = serde_json::json!(field);
                }
                (status_of(e.kind), axum::Json(body)).into_response()
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// 201 Created with a JSON body. A type rather than a response, so that
/// the console (`ui/`) can call the same handlers and render what they made.
pub struct Created<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        (StatusCode::CREATED, axum::Json(self.0)).into_response()
    }
}

/// A JSON request body whose errors name the field at fault.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        let has_type = request.headers().contains_key(header::CONTENT_TYPE);
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|_| Error::new(ErrorKind::PayloadTooLarge, "the request body is too large"))?;
        if body.is_empty() && !has_type {
            // A bodiless POST (e.g. a revoke with the default reason) means `{}`.
            return parse_json(b"{}").map(ApiJson).map_err(ApiError::from);
        }
        if !is_json {
            return Err(Error::new(
                ErrorKind::UnsupportedMediaType,
                "the request body must be JSON (Content-Type: application/json)",
            )
            .into());
        }
        parse_json(&body).map(ApiJson).map_err(ApiError::from)
    }
}

/// Parses a JSON body; errors say which field is wrong and why.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => de
            .end()
            .map(|()| value)
            .map_err(|e| Error::malformed(format!("the request body is not valid JSON: {e}"))),
        Err(e) => {
            let inner = e.inner().to_string();
            let mut path = e.path().to_string();
            // A missing or unknown top-level field is reported at the root;
            // name the field itself.
            if path == "." {
                if let Some(name) = ["unknown field `", "missing field `"]
                    .iter()
                    .find_map(|prefix| inner.strip_prefix(prefix))
                    .and_then(|rest| rest.split('`').next())
                {
                    path = name.to_string();
                }
            }
            let detail = if e.inner().is_syntax() || e.inner().is_eof() {
                format!("the request body is not valid JSON: {inner}")
            } else {
                format!("invalid request: {inner}")
            };
            if path == "." || path.is_empty() {
                Err(Error::malformed(detail))
            } else {
                Err(Error::invalid(path, detail))
            }
        }
    }
}

/// `?limit=&offset=` of the listing endpoints.
#[derive(Debug, Clone, Copy, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// Items to skip (default 0).
    pub offset: Option<i64>,
}

impl Page {
    /// The limit and offset to apply, after checking them.
    pub fn resolve(&self) -> Result<(i64, i64), Error> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(Error::invalid("limit", "limit must be 1 to 1000"));
        }
        let offset = self.offset.unwrap_or(0);
        if offset < 0 {
            return Err(Error::invalid("offset", "offset must not be negative"));
        }
        Ok((limit, offset))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "acmehub admin API",
        description = "Instances, access keys, tokens, console users, the certificate inventory, orders and the audit log. Every request carries `Authorization: Bearer <token>`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The admin routes and their OpenAPI document, from one table.
pub fn router() -> (axum::Router<Arc<Hub>>, utoipa::openapi::OpenApi) {
    use dns::*;
    use handlers::*;
    use inventory::*;
    use managed::*;
    use notify::*;
    use relay::*;
    let (router, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_instances, create_instance))
        .routes(routes!(show_instance, patch_instance, delete_instance))
        .routes(routes!(list_access_keys, create_access_key))
        .routes(routes!(
            show_access_key,
            patch_access_key,
            delete_access_key
        ))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(delete_token))
        .routes(routes!(list_users, create_user))
        .routes(routes!(delete_user))
        .routes(routes!(list_orders))
        .routes(routes!(show_order))
        .routes(routes!(list_certificates, create_managed_certificate))
        .routes(routes!(download_certificate))
        .routes(routes!(list_managed_certificates))
        .routes(routes!(
            show_managed_certificate,
            patch_managed_certificate,
            delete_managed_certificate
        ))
        .routes(routes!(renew_managed_certificate))
        .routes(routes!(list_channels, create_channel))
        .routes(routes!(show_channel, delete_channel))
        .routes(routes!(test_channel))
        .routes(routes!(list_notifications))
        .routes(routes!(show_certificate))
        .routes(routes!(revoke_certificate))
        .routes(routes!(list_events))
        .routes(routes!(list_kinds))
        .routes(routes!(list_credentials, create_credential))
        .routes(routes!(
            show_credential,
            patch_credential,
            delete_credential
        ))
        .routes(routes!(list_zones, create_zone))
        .routes(routes!(delete_zone))
        .routes(routes!(test_zone))
        .routes(routes!(list_delegations, create_delegation))
        .routes(routes!(show_delegation, delete_delegation))
        .routes(routes!(check_delegation))
        .routes(routes!(list_ca_accounts, create_ca_account))
        .routes(routes!(
            show_ca_account,
            patch_ca_account,
            delete_ca_account
        ))
        .routes(routes!(test_ca_account))
        .split_for_parts();
    api.info.version = env!("CARGO_PKG_VERSION").to_string();
    let document = api.to_json().unwrap_or_else(|_| "{}".into());
    let router = router.route(
        "/api/v1/openapi.json",
        axum::routing::get(move || {
            let document = document.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], document) }
        }),
    );
    (router, api)
}
