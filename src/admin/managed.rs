//! Admin endpoints for the certificates the hub manages itself, and the
//! download of certificates (and, for managed ones, their keys).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::views::ManagedView;
use super::{ApiJson, ApiResult, Created};
use crate::error::Error;
use crate::hub::Hub;
use crate::managed::{self, ManagedSettings};
use crate::store::{Instance, ManagedCertificate};
use crate::tenancy::principals::Principal;
use crate::util::now;

type Hub_ = State<Arc<Hub>>;

async fn view(hub: &Hub, m: &ManagedCertificate) -> Result<ManagedView, Error> {
    let current = match &m.certificate_id {
        Some(id) => hub.store.certificate(&m.instance_id, id).await?,
        None => None,
    };
    Ok(ManagedView::new(m, current.as_ref(), now()))
}

async fn find(
    hub: &Hub,
    who: &Principal,
    i: &str,
    id: &str,
) -> Result<(Instance, ManagedCertificate), Error> {
    let instance = who.instance(hub, i).await?;
    let m = hub
        .store
        .managed_certificate(&instance.id, id)
        .await?
        .ok_or_else(|| {
            Error::not_found(format!(
                "there is no managed certificate {id:?} in this instance"
            ))
        })?;
    Ok((instance, m))
}

#[utoipa::path(post, path = "/api/v1/instances/{i}/certificates", tag = "managed certificates",
    request_body = ManagedSettings,
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 201, description = "Created as a draft; the hub makes the key and issues on its own", body = ManagedView),
              (status = 400, description = "A field is invalid"),
              (status = 404, description = "No such instance"),
              (status = 409, description = "The name is taken")))]
pub async fn create_managed_certificate(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
    ApiJson(settings): ApiJson<ManagedSettings>,
) -> ApiResult<Created<ManagedView>> {
    let instance = who.instance(&hub, &i).await?;
    let m = managed::create_managed(&hub, &who.actor(), &instance, &settings).await?;
    Ok(Created(view(&hub, &m).await?))
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/managed-certificates", tag = "managed certificates",
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 200, description = "Managed certificates, by name", body = Vec<ManagedView>),
              (status = 404, description = "No such instance")))]
pub async fn list_managed_certificates(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
) -> ApiResult<Json<Vec<ManagedView>>> {
    let instance = who.instance(&hub, &i).await?;
    let mut views = Vec::new();
    for m in hub.store.managed_certificates(&instance.id).await? {
        views.push(view(&hub, &m).await?);
    }
    Ok(Json(views))
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/managed-certificates/{id}", tag = "managed certificates",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Managed certificate id or name")),
    responses((status = 200, description = "Its status, the step it waits on, the next renewal and the history", body = ManagedView),
              (status = 404, description = "No such managed certificate")))]
pub async fn show_managed_certificate(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<Json<ManagedView>> {
    let (_, m) = find(&hub, &who, &i, &id).await?;
    Ok(Json(view(&hub, &m).await?))
}

#[utoipa::path(patch, path = "/api/v1/instances/{i}/managed-certificates/{id}", tag = "managed certificates",
    request_body = ManagedSettings,
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Managed certificate id or name")),
    responses((status = 200, description = "Updated (auto_renew, renew_before_days, keep_key, tags)", body = ManagedView),
              (status = 400, description = "A field is invalid or fixed"),
              (status = 404, description = "No such managed certificate")))]
pub async fn patch_managed_certificate(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
    ApiJson(settings): ApiJson<ManagedSettings>,
) -> ApiResult<Json<ManagedView>> {
    let (_, mut m) = find(&hub, &who, &i, &id).await?;
    managed::update_managed(&hub, &who.actor(), &mut m, &settings).await?;
    Ok(Json(view(&hub, &m).await?))
}

#[utoipa::path(delete, path = "/api/v1/instances/{i}/managed-certificates/{id}", tag = "managed certificates",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Managed certificate id or name")),
    responses((status = 204, description = "No longer managed (issued certificates stay in the inventory)"),
              (status = 404, description = "No such managed certificate")))]
pub async fn delete_managed_certificate(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, m) = find(&hub, &who, &i, &id).await?;
    managed::delete_managed(&hub, &who.actor(), &m).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/instances/{i}/managed-certificates/{id}/renew", tag = "managed certificates",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Managed certificate id or name")),
    responses((status = 202, description = "Renewal started (a new key unless keep_key)", body = ManagedView),
              (status = 404, description = "No such managed certificate"),
              (status = 409, description = "An issuance is in flight")))]
pub async fn renew_managed_certificate(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (_, mut m) = find(&hub, &who, &i, &id).await?;
    managed::renew_now(&hub, &who.actor(), &mut m).await?;
    Ok((StatusCode::ACCEPTED, Json(view(&hub, &m).await?)).into_response())
}

/// What to download.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// `pem` (the certificate), `fullchain` (with its chain, the default),
    /// `key` (the private key of a managed certificate) or `pkcs12` (key and
    /// chain, protected by the password in the `X-Password` header); the
    /// last two need a token with write role.
    pub format: Option<String>,
    /// Refused: a password in a URL ends up in logs. Use `X-Password`.
    #[param(ignore)]
    pub password: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/certificates/{id}/download", tag = "managed certificates",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Managed certificate id or name, or an issued certificate's id or serial"),
           DownloadQuery),
    responses((status = 200, description = "PEM", content_type = "application/x-pem-file"),
              (status = 400, description = "Unknown format"),
              (status = 403, description = "The key needs a token with write role"),
              (status = 404, description = "No such certificate, or not issued yet")))]
pub async fn download_certificate(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
    Query(query): Query<DownloadQuery>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    let instance = who.instance(&hub, &i).await?;
    if query.password.is_some() {
        return Err(Error::invalid(
            "password",
            "send the PKCS#12 password in the X-Password header, not in the URL (URLs end up in logs)",
        )
        .into());
    }
    let format = query.format.unwrap_or_else(|| "fullchain".into());
    let managed = hub.store.managed_certificate(&instance.id, &id).await?;
    let cert_id = match &managed {
        Some(m) => m.certificate_id.clone(),
        None => Some(id.clone()),
    };
    let keyed = || {
        managed.as_ref().ok_or_else(|| {
            Error::invalid(
                "format",
                "only managed certificates have a key here (the hub never sees an ACME client's key)",
            )
        })
    };
    let body = match format.as_str() {
        "key" => {
            let m = keyed()?;
            who.require_write()?;
            managed::private_key_pem(&hub, &who.actor(), m, "key").await?
        }
        "pkcs12" => {
            let m = keyed()?;
            who.require_write()?;
            let password = headers
                .get("x-password")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    Error::invalid(
                        "password",
                        "pkcs12 needs the password in the X-Password header",
                    )
                })?;
            let cert = match &m.certificate_id {
                Some(cid) => hub.store.certificate(&instance.id, cid).await?,
                None => None,
            }
            .and_then(|c| c.chain_pem)
            .ok_or_else(|| Error::not_found(format!("certificate {id:?} is not issued yet")))?;
            let der = managed::pkcs12(&hub, &who.actor(), m, &cert, password).await?;
            return Ok((
                [
                    (header::CONTENT_TYPE, "application/x-pkcs12"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                der,
            )
                .into_response());
        }
        "pem" | "fullchain" => {
            let cert = match cert_id {
                Some(cid) => hub.store.certificate_by_ref(&instance.id, &cid).await?,
                None => None,
            }
            .filter(|c| c.der.is_some())
            .ok_or_else(|| Error::not_found(format!("certificate {id:?} is not issued yet")))?;
            if format == "pem" {
                crate::util::pem("CERTIFICATE", cert.der.as_deref().unwrap_or_default())
            } else {
                cert.chain_pem.clone().unwrap_or_default()
            }
        }
        _ => {
            return Err(
                Error::invalid("format", "format must be pem, fullchain, key or pkcs12").into(),
            );
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}
