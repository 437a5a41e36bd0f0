//! Admin endpoints for upstream CA accounts, with "Save and Test".

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::views::{CaAccountView, CaTestView};
use super::{ApiJson, ApiResult, Created};
use crate::error::Error;
use crate::hub::Hub;
use crate::issuance::ca_accounts::{self, CaAccountSettings};
use crate::store::CaAccount;
use crate::tenancy::principals::Principal;

type Hub_ = State<Arc<Hub>>;

#[utoipa::path(get, path = "/api/v1/instances/{i}/ca-accounts", tag = "ca accounts",
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 200, description = "CA accounts, preferred first, then by priority", body = Vec<CaAccountView>),
              (status = 404, description = "No such instance")))]
pub async fn list_ca_accounts(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
) -> ApiResult<Json<Vec<CaAccountView>>> {
    let instance = who.instance(&hub, &i).await?;
    let accounts = hub.store.ca_accounts(&instance.id).await?;
    Ok(Json(accounts.iter().map(CaAccountView::new).collect()))
}

#[utoipa::path(post, path = "/api/v1/instances/{i}/ca-accounts", tag = "ca accounts",
    request_body = CaAccountSettings,
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 201, description = "Saved (not yet registered: test it)", body = CaAccountView),
              (status = 400, description = "A field is invalid"),
              (status = 404, description = "No such instance"),
              (status = 409, description = "The name is taken")))]
pub async fn create_ca_account(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
    ApiJson(settings): ApiJson<CaAccountSettings>,
) -> ApiResult<Created<CaAccountView>> {
    let instance = who.instance(&hub, &i).await?;
    check_directory(&hub, &who, &instance, settings.directory_url.as_deref()).await?;
    let a = ca_accounts::create_ca_account(&hub, &who.actor(), &instance, &settings).await?;
    let a = find(&hub, &who, &i, &a.id).await?;
    Ok(Created(CaAccountView::new(&a)))
}

/// A CA directory URL an instance-scoped token sets or tests must lead
/// where the instance's target policy allows ("Save and Test" shows what
/// the directory answers); hub-wide tokens may name any.
async fn check_directory(
    hub: &Hub,
    who: &Principal,
    instance: &crate::store::Instance,
    url: Option<&str>,
) -> Result<(), Error> {
    match url {
        Some(url) if who.require_admin().is_err() => {
            crate::tenancy::outbound::check_outbound_url(
                hub,
                instance,
                url,
                "directory_url",
                "CA directory",
            )
            .await
        }
        _ => Ok(()),
    }
}

async fn find(hub: &Hub, who: &Principal, i: &str, id: &str) -> Result<CaAccount, Error> {
    let instance = who.instance(hub, i).await?;
    hub.store
        .ca_account(&instance.id, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("there is no CA account {id:?} in this instance")))
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/ca-accounts/{id}", tag = "ca accounts",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "CA account id or name")),
    responses((status = 200, description = "The CA account", body = CaAccountView),
              (status = 404, description = "No such CA account")))]
pub async fn show_ca_account(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<Json<CaAccountView>> {
    Ok(Json(CaAccountView::new(&find(&hub, &who, &i, &id).await?)))
}

#[utoipa::path(patch, path = "/api/v1/instances/{i}/ca-accounts/{id}", tag = "ca accounts",
    request_body = CaAccountSettings,
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "CA account id or name")),
    responses((status = 200, description = "Updated", body = CaAccountView),
              (status = 400, description = "A field is invalid"),
              (status = 404, description = "No such CA account")))]
pub async fn patch_ca_account(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
    ApiJson(settings): ApiJson<CaAccountSettings>,
) -> ApiResult<Json<CaAccountView>> {
    let a = find(&hub, &who, &i, &id).await?;
    let instance = who.instance(&hub, &i).await?;
    check_directory(&hub, &who, &instance, settings.directory_url.as_deref()).await?;
    let a = ca_accounts::update_ca_account(&hub, &who.actor(), &a, &settings).await?;
    Ok(Json(CaAccountView::new(
        &find(&hub, &who, &i, &a.id).await?,
    )))
}

#[utoipa::path(delete, path = "/api/v1/instances/{i}/ca-accounts/{id}", tag = "ca accounts",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "CA account id or name")),
    responses((status = 204, description = "Deleted"),
              (status = 404, description = "No such CA account")))]
pub async fn delete_ca_account(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let a = find(&hub, &who, &i, &id).await?;
    ca_accounts::delete_ca_account(&hub, &who.actor(), &a).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/instances/{i}/ca-accounts/{id}/test", tag = "ca accounts",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "CA account id or name")),
    responses((status = 200, description = "Whether the CA's API answers, its endpoints, and the account's status", body = CaTestView),
              (status = 404, description = "No such CA account")))]
pub async fn test_ca_account(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<Json<CaTestView>> {
    who.require_write()?;
    let a = find(&hub, &who, &i, &id).await?;
    // The test answers with what the directory says: an instance token must
    // not turn it on an address its instance may not reach.
    let instance = who.instance(&hub, &i).await?;
    check_directory(
        &hub,
        &who,
        &instance,
        Some(&a.directory_url)
            .filter(|u| !u.is_empty())
            .map(String::as_str),
    )
    .await?;
    let (report, _) = ca_accounts::test_ca_account(&hub, &who.actor(), &a).await?;
    Ok(Json(CaTestView {
        available: report.available,
        detail: report.detail,
        endpoints: report.endpoints,
        account_status: report.account_status.as_str().to_string(),
        latency_ms: report.latency_ms,
    }))
}
