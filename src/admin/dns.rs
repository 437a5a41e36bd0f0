//! Admin endpoints for stored credentials, DNS zone bindings and delegations.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::views::{CredentialView, DelegationView, KindView, TestStep, ZoneTestView, ZoneView};
use super::{ApiJson, ApiResult, Created};
use crate::dns::credentials::{self, CredentialSettings, ZoneSettings};
use crate::dns::delegations::{self, DelegationSettings};
use crate::dns::providers::KINDS;
use crate::error::Error;
use crate::hub::Hub;
use crate::store::{Credential, DnsZone, Instance};
use crate::tenancy::principals::Principal;

type Hub_ = State<Arc<Hub>>;

async fn credential_view(hub: &Hub, c: &Credential) -> Result<CredentialView, Error> {
    let used_by = hub
        .store
        .zones_of_credential(&c.id)
        .await?
        .into_iter()
        .map(|z| z.zone)
        .collect();
    Ok(CredentialView::new(c, used_by))
}

#[utoipa::path(get, path = "/api/v1/credential-kinds", tag = "credentials",
    responses((status = 200, description = "Every credential kind with its config and secret fields", body = Vec<KindView>)))]
pub async fn list_kinds(_who: Principal) -> Json<Vec<KindView>> {
    Json(
        KINDS
            .iter()
            .map(|k| KindView {
                name: k.name,
                title: k.title,
                dns_provider: k.is_dns_provider(),
                config: k.config.to_vec(),
                secret: k.secret.to_vec(),
            })
            .collect(),
    )
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/credentials", tag = "credentials",
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 200, description = "The instance's credentials (never their secrets)", body = Vec<CredentialView>),
              (status = 404, description = "No such instance")))]
pub async fn list_credentials(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
) -> ApiResult<Json<Vec<CredentialView>>> {
    let instance = who.instance(&hub, &i).await?;
    let mut views = Vec::new();
    for c in hub.store.credentials(&instance.id).await? {
        views.push(credential_view(&hub, &c).await?);
    }
    Ok(Json(views))
}

#[utoipa::path(post, path = "/api/v1/instances/{i}/credentials", tag = "credentials",
    request_body = CredentialSettings,
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 201, description = "Created; the secret is sealed and never shown", body = CredentialView),
              (status = 400, description = "A field is invalid"),
              (status = 404, description = "No such instance"),
              (status = 409, description = "The name is taken")))]
pub async fn create_credential(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
    ApiJson(settings): ApiJson<CredentialSettings>,
) -> ApiResult<Created<CredentialView>> {
    let instance = who.instance(&hub, &i).await?;
    check_credential_targets(&hub, &who, &instance, &settings).await?;
    let c = credentials::create_credential(&hub, &who.actor(), &instance, &settings).await?;
    Ok(Created(credential_view(&hub, &c).await?))
}

/// The DNS servers and endpoints an instance-scoped token puts in a
/// credential must lead where the instance's target policy allows; hub-wide
/// tokens may name any.
async fn check_credential_targets(
    hub: &Hub,
    who: &Principal,
    instance: &crate::store::Instance,
    settings: &CredentialSettings,
) -> Result<(), Error> {
    match &settings.config {
        Some(config) if who.require_admin().is_err() => {
            crate::tenancy::outbound::check_credential_targets(hub, instance, config).await
        }
        _ => Ok(()),
    }
}

async fn find_credential(
    hub: &Hub,
    who: &Principal,
    i: &str,
    id: &str,
) -> Result<Credential, Error> {
    let instance = who.instance(hub, i).await?;
    hub.store
        .credential(&instance.id, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("there is no credential {id:?} in this instance")))
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/credentials/{id}", tag = "credentials",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Credential id or name")),
    responses((status = 200, description = "The credential (never its secret)", body = CredentialView),
              (status = 404, description = "No such credential")))]
pub async fn show_credential(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<Json<CredentialView>> {
    let c = find_credential(&hub, &who, &i, &id).await?;
    Ok(Json(credential_view(&hub, &c).await?))
}

#[utoipa::path(patch, path = "/api/v1/instances/{i}/credentials/{id}", tag = "credentials",
    request_body = CredentialSettings,
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Credential id or name")),
    responses((status = 200, description = "Updated; a new secret rotates it (the fingerprint changes)", body = CredentialView),
              (status = 400, description = "A field is invalid"),
              (status = 404, description = "No such credential")))]
pub async fn patch_credential(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
    ApiJson(settings): ApiJson<CredentialSettings>,
) -> ApiResult<Json<CredentialView>> {
    let c = find_credential(&hub, &who, &i, &id).await?;
    let instance = who.instance(&hub, &i).await?;
    check_credential_targets(&hub, &who, &instance, &settings).await?;
    let updated = credentials::update_credential(&hub, &who.actor(), &c, &settings).await?;
    Ok(Json(credential_view(&hub, &updated).await?))
}

#[utoipa::path(delete, path = "/api/v1/instances/{i}/credentials/{id}", tag = "credentials",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Credential id or name")),
    responses((status = 204, description = "Deleted"),
              (status = 404, description = "No such credential"),
              (status = 409, description = "A zone binding uses it (the bindings are named)")))]
pub async fn delete_credential(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let c = find_credential(&hub, &who, &i, &id).await?;
    credentials::delete_credential(&hub, &who.actor(), &c).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn zone_view(hub: &Hub, z: &DnsZone) -> Result<ZoneView, Error> {
    let credential = hub
        .store
        .credential(&z.instance_id, &z.credential_id)
        .await?
        .map(|c| c.name)
        .unwrap_or_default();
    Ok(ZoneView::new(z, credential))
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/dns-zones", tag = "dns",
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 200, description = "Zone bindings", body = Vec<ZoneView>),
              (status = 404, description = "No such instance")))]
pub async fn list_zones(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
) -> ApiResult<Json<Vec<ZoneView>>> {
    let instance = who.instance(&hub, &i).await?;
    let mut views = Vec::new();
    for z in hub.store.zones(&instance.id).await? {
        views.push(zone_view(&hub, &z).await?);
    }
    Ok(Json(views))
}

#[utoipa::path(post, path = "/api/v1/instances/{i}/dns-zones", tag = "dns",
    request_body = ZoneSettings,
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 201, description = "Bound", body = ZoneView),
              (status = 400, description = "A field is invalid, or the credential is another instance's"),
              (status = 404, description = "No such instance"),
              (status = 409, description = "The zone is bound already")))]
pub async fn create_zone(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
    ApiJson(settings): ApiJson<ZoneSettings>,
) -> ApiResult<Created<ZoneView>> {
    let instance = who.instance(&hub, &i).await?;
    let z = credentials::create_zone(&hub, &who.actor(), &instance, &settings).await?;
    Ok(Created(zone_view(&hub, &z).await?))
}

async fn find_zone(
    hub: &Hub,
    who: &Principal,
    i: &str,
    id: &str,
) -> Result<(Instance, DnsZone), Error> {
    let instance = who.instance(hub, i).await?;
    let wanted = credentials::parse_zone(id, "zone").unwrap_or_default();
    let zone = hub
        .store
        .zones(&instance.id)
        .await?
        .into_iter()
        .find(|z| z.id == id || z.zone == wanted)
        .ok_or_else(|| {
            Error::not_found(format!("there is no zone binding {id:?} in this instance"))
        })?;
    Ok((instance, zone))
}

#[utoipa::path(delete, path = "/api/v1/instances/{i}/dns-zones/{id}", tag = "dns",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Binding id or zone name")),
    responses((status = 204, description = "Unbound"),
              (status = 404, description = "No such binding")))]
pub async fn delete_zone(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, zone) = find_zone(&hub, &who, &i, &id).await?;
    credentials::delete_zone(&hub, &who.actor(), &zone).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/instances/{i}/dns-zones/{id}/test", tag = "dns",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Binding id or zone name")),
    responses((status = 200, description = "Each step of publishing, seeing and removing a canary TXT record", body = ZoneTestView),
              (status = 404, description = "No such binding")))]
pub async fn test_zone(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<Json<ZoneTestView>> {
    let (instance, zone) = find_zone(&hub, &who, &i, &id).await?;
    let steps = credentials::test_zone(&hub, &instance, &zone).await;
    Ok(Json(ZoneTestView {
        ok: steps.iter().all(|s| s.ok) && steps.len() >= 4,
        zone: zone.zone,
        steps: steps
            .into_iter()
            .map(|s| TestStep {
                step: s.step.to_string(),
                ok: s.ok,
                detail: s.detail,
                ms: s.ms,
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/delegations", tag = "dns",
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 200, description = "Delegations with their last checked status", body = Vec<DelegationView>),
              (status = 404, description = "No such instance")))]
pub async fn list_delegations(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
) -> ApiResult<Json<Vec<DelegationView>>> {
    let instance = who.instance(&hub, &i).await?;
    let list = hub.store.delegations(&instance.id).await?;
    Ok(Json(
        list.iter().map(|d| DelegationView::new(&hub, d)).collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/instances/{i}/delegations", tag = "dns",
    request_body = DelegationSettings,
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 201, description = "The CNAME to create, and whether it resolves", body = DelegationView),
              (status = 400, description = "The domain is invalid"),
              (status = 409, description = "Already delegated, or no technical zone is configured")))]
pub async fn create_delegation(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
    ApiJson(settings): ApiJson<DelegationSettings>,
) -> ApiResult<Created<DelegationView>> {
    let instance = who.instance(&hub, &i).await?;
    let d = delegations::create_delegation(&hub, &who.actor(), &instance, &settings).await?;
    Ok(Created(DelegationView::new(&hub, &d)))
}

async fn find_delegation(
    hub: &Hub,
    who: &Principal,
    i: &str,
    id: &str,
) -> Result<crate::store::Delegation, Error> {
    let instance = who.instance(hub, i).await?;
    let domain = credentials::parse_zone(id, "domain").unwrap_or_default();
    hub.store
        .delegations(&instance.id)
        .await?
        .into_iter()
        .find(|d| d.id == id || d.domain == domain)
        .ok_or_else(|| Error::not_found(format!("there is no delegation {id:?} in this instance")))
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/delegations/{id}", tag = "dns",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Delegation id or domain")),
    responses((status = 200, description = "The delegation and its status at the last check", body = DelegationView),
              (status = 404, description = "No such delegation")))]
pub async fn show_delegation(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<Json<DelegationView>> {
    let d = find_delegation(&hub, &who, &i, &id).await?;
    Ok(Json(DelegationView::new(&hub, &d)))
}

#[utoipa::path(post, path = "/api/v1/instances/{i}/delegations/{id}/check", tag = "dns",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Delegation id or domain")),
    responses((status = 200, description = "The delegation, its CNAME checked again now", body = DelegationView),
              (status = 403, description = "A read-only token (the check stores its outcome)"),
              (status = 404, description = "No such delegation")))]
pub async fn check_delegation(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<Json<DelegationView>> {
    let mut d = find_delegation(&hub, &who, &i, &id).await?;
    delegations::check(&hub, &mut d).await?;
    Ok(Json(DelegationView::new(&hub, &d)))
}

#[utoipa::path(delete, path = "/api/v1/instances/{i}/delegations/{id}", tag = "dns",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Delegation id or domain")),
    responses((status = 204, description = "Deleted"),
              (status = 404, description = "No such delegation")))]
pub async fn delete_delegation(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let d = find_delegation(&hub, &who, &i, &id).await?;
    delegations::delete_delegation(&hub, &who.actor(), &d).await?;
    Ok(StatusCode::NO_CONTENT)
}
