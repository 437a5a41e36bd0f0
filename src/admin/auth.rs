//! Admin API authentication: the bearer token of a request stands for a
//! principal (`tenancy::principals`); a request other than GET or HEAD
//! needs the write role. A failed check says nothing about why.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiError;
use crate::hub::Hub;
use crate::tenancy::principals::Principal;
use crate::tenancy::principals::{identify, request_token};

async fn authenticate(hub: &Hub, parts: &Parts) -> Result<Principal, ApiError> {
    let token = request_token(&parts.headers).ok_or(ApiError::Unauthenticated)?;
    principal_for(hub, &token).await
}

/// The principal a token stands for; 401 when it stands for none.
pub async fn principal_for(hub: &Hub, token: &str) -> Result<Principal, ApiError> {
    identify(hub, token)
        .await?
        .map(|(principal, _)| principal)
        .ok_or(ApiError::Unauthenticated)
}

impl FromRequestParts<Arc<Hub>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        hub: &Arc<Hub>,
    ) -> Result<Self, Self::Rejection> {
        let principal = authenticate(hub, parts).await?;
        if parts.method != axum::http::Method::GET && parts.method != axum::http::Method::HEAD {
            principal.require_write().map_err(ApiError::from)?;
        }
        Ok(principal)
    }
}
