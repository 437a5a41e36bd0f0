//! Managed challenges for clients that talk ACME to another CA: the hub
//! publishes their DNS-01 TXT records through APIs those clients already
//! speak.
//!
//! - acme-dns (`/acme-dns/{instance}/register`, `/update` with `X-Api-User`
//!   / `X-Api-Key`): each registration owns one random label of the
//!   technical zone, and may touch only that label. Unlike acme-dns, which
//!   keeps the latest 2, a label holds up to `max_txt_values_per_name`
//!   values at once (wildcard + apex, parallel orders); a write beyond that
//!   is refused with 409 until one expires, never dropped silently.
//! - lego httpreq (`/httpreq/{instance}/present`, `/cleanup`): HTTP Basic
//!   (or Bearer) with a write token of the instance; the name must be
//!   covered by one of the instance's zone bindings or delegations.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use crate::admin::auth::principal_for;
use crate::admin::{ApiError, ApiJson};
use crate::audit::{self, Actor};
use crate::error::Error;
use crate::hub::Hub;
use crate::secrets::token_hash;
use crate::store::{AcmeDnsAccount, Instance};
use crate::tenancy::principals::{Principal, request_token};
use crate::util::{now, random_bytes, random_id};

use crate::dns::publish::{add_to_technical_zone, solver_for};

/// How long an acme-dns TXT value is served.
const ACME_DNS_RECORD_LIFETIME: i64 = 86400;

pub fn router() -> axum::Router<Arc<Hub>> {
    axum::Router::new()
        .route("/acme-dns/{instance}/register", post(acme_dns_register))
        .route("/acme-dns/{instance}/update", post(acme_dns_update))
        .route("/httpreq/{instance}/present", post(httpreq_present))
        .route("/httpreq/{instance}/cleanup", post(httpreq_cleanup))
}

/// The instance a write token may publish for (404 when it cannot see it).
async fn writer(
    hub: &Hub,
    headers: &HeaderMap,
    instance: &str,
) -> Result<(Principal, Instance), ApiError> {
    let token = request_token(headers).ok_or(ApiError::Unauthenticated)?;
    let who = principal_for(hub, &token).await?;
    who.require_write()?;
    let instance = who.instance(hub, instance).await?;
    Ok((who, instance))
}

async fn acme_dns_register(
    State(hub): State<Arc<Hub>>,
    Path(instance): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (who, instance) = writer(&hub, &headers, &instance).await?;
    let zone = crate::dns::delegations::zone_name(&hub)?.to_string();
    let label = crate::dns::delegations::random_label();
    let password = crate::util::b64(&random_bytes::<30>());
    let account = AcmeDnsAccount {
        username: random_id(),
        instance_id: instance.id.clone(),
        key_hash: token_hash(&password),
        label: label.clone(),
        created_at: now(),
    };
    hub.store.insert_acme_dns_account(&account).await?;
    audit::record(
        &hub,
        Some(&instance.id),
        &who.actor(),
        "acme-dns.register",
        ("acme-dns-account", &account.username),
        json!({"fulldomain": format!("{label}.{zone}")}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "username": account.username,
            "password": password,
            "fulldomain": format!("{label}.{zone}"),
            "subdomain": label,
            "allowfrom": [],
        })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AcmeDnsUpdate {
    subdomain: String,
    txt: String,
}

/// A TXT value as ACME clients send them: printable ASCII, at most 255 bytes.
fn check_txt(value: &str, field: &str) -> Result<(), Error> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{field} must be 1 to 255 printable characters"),
        ))
    }
}

async fn acme_dns_update(
    State(hub): State<Arc<Hub>>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    ApiJson(update): ApiJson<AcmeDnsUpdate>,
) -> Result<Response, ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (Some(user), Some(key)) = (header("x-api-user"), header("x-api-key")) else {
        return Err(ApiError::Unauthenticated);
    };
    let account = hub
        .store
        .acme_dns_account(&user)
        .await?
        .filter(|a| a.key_hash == token_hash(&key))
        .ok_or(ApiError::Unauthenticated)?;
    let instance = hub
        .store
        .instance_by_ref(&instance)
        .await?
        .filter(|i| i.id == account.instance_id)
        .ok_or(ApiError::Unauthenticated)?;
    if update.subdomain != account.label {
        return Err(Error::unauthorized("this account may update only its own subdomain").into());
    }
    check_txt(&update.txt, "txt")?;
    let zone = crate::dns::delegations::zone_name(&hub)?;
    let name = format!("{}.{zone}", account.label);
    add_to_technical_zone(&hub, &name, &update.txt, ACME_DNS_RECORD_LIFETIME).await?;
    audit::record(
        &hub,
        Some(&instance.id),
        &Actor::Token(format!("acme-dns:{}", account.username)),
        "acme-dns.update",
        ("acme-dns-account", &account.username),
        json!({"record": name}),
    )
    .await;
    Ok(Json(json!({"txt": update.txt})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpreqRecord {
    fqdn: String,
    value: String,
}

async fn httpreq(
    hub: &Hub,
    headers: &HeaderMap,
    instance: &str,
    record: &HttpreqRecord,
    present: bool,
) -> Result<Response, ApiError> {
    let (who, instance) = writer(hub, headers, instance).await?;
    let name = record.fqdn.trim_end_matches('.').to_ascii_lowercase();
    if !name.starts_with("_acme-challenge.") {
        return Err(Error::invalid("fqdn", "fqdn must be an _acme-challenge name").into());
    }
    crate::policy::Identifier::dns(name.strip_prefix("_acme-challenge.").unwrap_or(&name))
        .map_err(|e| Error::invalid("fqdn", e.detail))?;
    check_txt(&record.value, "value")?;
    let solver = solver_for(hub, &instance, &name).await?;
    if present {
        solver.publish(hub, &name, &record.value).await?;
        solver.wait_visible(hub, &name, &record.value).await?;
    } else {
        solver.cleanup(hub, &name, &record.value).await?;
    }
    audit::record(
        hub,
        Some(&instance.id),
        &who.actor(),
        if present {
            "httpreq.present"
        } else {
            "httpreq.cleanup"
        },
        ("record", &name),
        json!({"via": solver.describe()}),
    )
    .await;
    Ok(Json(json!({"fqdn": record.fqdn, "ok": true})).into_response())
}

async fn httpreq_present(
    State(hub): State<Arc<Hub>>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    ApiJson(record): ApiJson<HttpreqRecord>,
) -> Result<Response, ApiError> {
    httpreq(&hub, &headers, &instance, &record, true).await
}

async fn httpreq_cleanup(
    State(hub): State<Arc<Hub>>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    ApiJson(record): ApiJson<HttpreqRecord>,
) -> Result<Response, ApiError> {
    httpreq(&hub, &headers, &instance, &record, false).await
}
