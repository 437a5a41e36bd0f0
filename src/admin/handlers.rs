//! Admin endpoints for instances, access keys and API tokens.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::views::{
    AccessKeyView, InstanceView, NewAccessKeyView, NewTokenView, TokenView, UserView,
};
use super::{ApiJson, ApiResult, Created};
use crate::audit;
use crate::error::{Error, ErrorKind};
use crate::hub::Hub;
use crate::secrets::{new_token, token_hash};
use crate::store::{ApiToken, StoreError};
use crate::tenancy::access_keys::AccessKeySettings;
use crate::tenancy::instances::InstanceSettings;
use crate::tenancy::principals::{Principal, resolve_scope};
use crate::tenancy::users::{self, NewUser};
use crate::util::{now, random_id};

type Hub_ = State<Arc<Hub>>;

// ---- instances ----

#[utoipa::path(get, path = "/api/v1/instances", tag = "instances",
    responses((status = 200, description = "The instances this token sees", body = Vec<InstanceView>),
              (status = 401, description = "No valid token")))]
pub async fn list_instances(
    State(hub): Hub_,
    who: Principal,
) -> ApiResult<Json<Vec<InstanceView>>> {
    let instances = hub.store.instances().await?;
    Ok(Json(
        instances
            .iter()
            .filter(|i| who.sees(i))
            .map(|i| InstanceView::new(&hub, i))
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/instances", tag = "instances", request_body = InstanceSettings,
    responses((status = 201, description = "Created", body = InstanceView),
              (status = 400, description = "A field is invalid"),
              (status = 403, description = "Not an admin write token"),
              (status = 409, description = "The name is taken")))]
pub async fn create_instance(
    State(hub): Hub_,
    who: Principal,
    ApiJson(settings): ApiJson<InstanceSettings>,
) -> ApiResult<Created<InstanceView>> {
    who.require_admin()?;
    let instance =
        crate::tenancy::instances::create_instance(&hub, &who.actor(), &settings).await?;
    Ok(Created(InstanceView::new(&hub, &instance)))
}

#[utoipa::path(get, path = "/api/v1/instances/{i}", tag = "instances",
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 200, description = "The instance", body = InstanceView),
              (status = 404, description = "No such instance (or not visible to this token)")))]
pub async fn show_instance(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
) -> ApiResult<Json<InstanceView>> {
    let instance = who.instance(&hub, &i).await?;
    Ok(Json(InstanceView::new(&hub, &instance)))
}

#[utoipa::path(patch, path = "/api/v1/instances/{i}", tag = "instances", request_body = InstanceSettings,
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 200, description = "Updated", body = InstanceView),
              (status = 400, description = "A field is invalid"),
              (status = 403, description = "An instance-scoped token widened a setting (private targets allowed, EAB off, longer lifetime, more challenge types, higher rate limits)"),
              (status = 404, description = "No such instance")))]
pub async fn patch_instance(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
    ApiJson(settings): ApiJson<InstanceSettings>,
) -> ApiResult<Json<InstanceView>> {
    let instance = who.instance(&hub, &i).await?;
    crate::tenancy::instances::check_instance_rights(
        &hub,
        &instance,
        &settings,
        who.require_admin().is_ok(),
    )?;
    let updated =
        crate::tenancy::instances::update_instance(&hub, &who.actor(), &instance, &settings)
            .await?;
    Ok(Json(InstanceView::new(&hub, &updated)))
}

#[utoipa::path(delete, path = "/api/v1/instances/{i}", tag = "instances",
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 204, description = "Deleted"),
              (status = 404, description = "No such instance"),
              (status = 409, description = "The instance still holds accounts, access keys or certificates")))]
pub async fn delete_instance(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
) -> ApiResult<StatusCode> {
    who.require_admin()?;
    let instance = who.instance(&hub, &i).await?;
    crate::tenancy::instances::delete_instance(&hub, &who.actor(), &instance).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- access keys ----

#[utoipa::path(get, path = "/api/v1/instances/{i}/access-keys", tag = "access keys",
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 200, description = "The instance's access keys (without HMAC keys)", body = Vec<AccessKeyView>),
              (status = 404, description = "No such instance")))]
pub async fn list_access_keys(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
) -> ApiResult<Json<Vec<AccessKeyView>>> {
    let instance = who.instance(&hub, &i).await?;
    let keys = hub.store.access_keys(&instance.id).await?;
    let counts = hub.store.access_key_account_counts(&instance.id).await?;
    Ok(Json(
        keys.iter()
            .map(|k| AccessKeyView::new(k, counts.get(&k.id).copied().unwrap_or(0)))
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/instances/{i}/access-keys", tag = "access keys",
    request_body = AccessKeySettings,
    params(("i" = String, Path, description = "Instance id or name")),
    responses((status = 201, description = "Created; the HMAC key is shown this once", body = NewAccessKeyView),
              (status = 400, description = "A field is invalid"),
              (status = 403, description = "A pre-authorized key, asked for with an instance-scoped token"),
              (status = 404, description = "No such instance"),
              (status = 409, description = "The name is taken")))]
pub async fn create_access_key(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
    ApiJson(settings): ApiJson<AccessKeySettings>,
) -> ApiResult<Created<NewAccessKeyView>> {
    let instance = who.instance(&hub, &i).await?;
    crate::tenancy::access_keys::check_access_key_rights(
        &settings,
        None,
        who.require_admin().is_ok(),
    )?;
    let (key, hmac_key) =
        crate::tenancy::access_keys::create_access_key(&hub, &who.actor(), &instance, &settings)
            .await?;
    Ok(Created(NewAccessKeyView {
        key: AccessKeyView::new(&key, 0),
        hmac_key,
        directory_url: hub.directory_url(&instance.name),
    }))
}

async fn find_key(
    hub: &Hub,
    who: &Principal,
    i: &str,
    id: &str,
) -> Result<(crate::store::AccessKey, i64), Error> {
    let instance = who.instance(hub, i).await?;
    let key = hub
        .store
        .access_key(&instance.id, id)
        .await?
        .ok_or_else(|| {
            Error::not_found(format!("there is no access key {id:?} in this instance"))
        })?;
    let accounts = hub
        .store
        .access_key_account_counts(&instance.id)
        .await?
        .get(&key.id)
        .copied()
        .unwrap_or(0);
    Ok((key, accounts))
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/access-keys/{id}", tag = "access keys",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Access key id or name")),
    responses((status = 200, description = "The access key (without its HMAC key)", body = AccessKeyView),
              (status = 404, description = "No such access key")))]
pub async fn show_access_key(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<Json<AccessKeyView>> {
    let (key, accounts) = find_key(&hub, &who, &i, &id).await?;
    Ok(Json(AccessKeyView::new(&key, accounts)))
}

#[utoipa::path(patch, path = "/api/v1/instances/{i}/access-keys/{id}", tag = "access keys",
    request_body = AccessKeySettings,
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Access key id or name")),
    responses((status = 200, description = "Updated", body = AccessKeyView),
              (status = 400, description = "A field is invalid"),
              (status = 403, description = "An instance-scoped token widened a pre-authorized key (re-enabled it, later or no expiry, more identifiers, wildcards, pre-authorization)"),
              (status = 404, description = "No such access key"),
              (status = 409, description = "The key is revoked")))]
pub async fn patch_access_key(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
    ApiJson(settings): ApiJson<AccessKeySettings>,
) -> ApiResult<Json<AccessKeyView>> {
    let (key, accounts) = find_key(&hub, &who, &i, &id).await?;
    crate::tenancy::access_keys::check_access_key_rights(
        &settings,
        Some(&key),
        who.require_admin().is_ok(),
    )?;
    let updated =
        crate::tenancy::access_keys::update_access_key(&hub, &who.actor(), &key, &settings).await?;
    Ok(Json(AccessKeyView::new(&updated, accounts)))
}

#[utoipa::path(delete, path = "/api/v1/instances/{i}/access-keys/{id}", tag = "access keys",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Access key id or name")),
    responses((status = 200, description = "Revoked: its accounts can no longer order; the record stays for the audit trail", body = AccessKeyView),
              (status = 404, description = "No such access key"),
              (status = 409, description = "Already revoked")))]
pub async fn delete_access_key(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<Json<AccessKeyView>> {
    let (key, accounts) = find_key(&hub, &who, &i, &id).await?;
    let revoked = crate::tenancy::access_keys::revoke_access_key(&hub, &who.actor(), &key).await?;
    Ok(Json(AccessKeyView::new(&revoked, accounts)))
}

// ---- tokens ----

/// A token to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Unique: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// `admin` or `instance:NAME`.
    pub scope: String,
    /// `read` or `write`.
    pub role: String,
}

/// The scope as operators write it: `instance:NAME` rather than the stored id.
async fn scope_label(hub: &Hub, scope: &str) -> String {
    if let Some(id) = scope.strip_prefix("instance:") {
        if let Ok(Some(instance)) = hub.store.instance_by_ref(id).await {
            return format!("instance:{}", instance.name);
        }
    }
    scope.to_string()
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, description = "Every token (without secrets)", body = Vec<TokenView>),
              (status = 403, description = "Not an admin token")))]
pub async fn list_tokens(State(hub): Hub_, who: Principal) -> ApiResult<Json<Vec<TokenView>>> {
    who.require_admin()?;
    let mut views = Vec::new();
    for t in hub.store.tokens().await? {
        let label = scope_label(&hub, &t.scope).await;
        views.push(TokenView::new(&t, label));
    }
    Ok(Json(views))
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, description = "Created; the token is shown this once", body = NewTokenView),
              (status = 400, description = "A field is invalid"),
              (status = 403, description = "Not an admin write token"),
              (status = 409, description = "The name is taken")))]
pub async fn create_token(
    State(hub): Hub_,
    who: Principal,
    ApiJson(request): ApiJson<NewToken>,
) -> ApiResult<Created<NewTokenView>> {
    who.require_admin()?;
    crate::tenancy::fields::check_name("token", &request.name)?;
    if request.name == "bootstrap" {
        return Err(Error::invalid(
            "name",
            "\"bootstrap\" names the admin token from the data dir",
        )
        .into());
    }
    if crate::tenancy::principals::Role::parse(&request.role).is_none() {
        return Err(Error::invalid("role", "role must be \"read\" or \"write\"").into());
    }
    let (scope, label) = resolve_scope(&hub, &request.scope).await?;
    let secret = new_token();
    let token = ApiToken {
        id: random_id(),
        name: request.name,
        scope,
        role: request.role,
        created_by: who.actor().label(),
        created_at: now(),
        revoked_at: None,
    };
    hub.store.insert_token(&token, &token_hash(&secret)).await?;
    let instance_id = token.scope.strip_prefix("instance:");
    audit::record(
        &hub,
        instance_id,
        &who.actor(),
        "token.create",
        ("token", &token.id),
        serde_json::json!({"name": token.name, "scope": label, "role": token.role}),
    )
    .await;
    Ok(Created(NewTokenView {
        token_info: TokenView::new(&token, label),
        token: secret,
    }))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Token id or name")),
    responses((status = 204, description = "Revoked"),
              (status = 403, description = "Not an admin write token"),
              (status = 404, description = "No such token"),
              (status = 409, description = "Already revoked")))]
pub async fn delete_token(
    State(hub): Hub_,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    who.require_admin()?;
    let token = hub
        .store
        .token(&id)
        .await?
        .ok_or_else(|| Error::not_found(format!("there is no token {id:?}")))?;
    match hub.store.revoke_token(&token.id, now()).await {
        Ok(()) => {}
        Err(StoreError::Guard) => {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("token {:?} is already revoked", token.name),
            )
            .into());
        }
        Err(e) => return Err(e.into()),
    }
    // Its console sessions end with it (they would be refused anyway).
    hub.store
        .delete_ui_sessions_of(&format!("token:{}", token.id))
        .await?;
    audit::record(
        &hub,
        token.scope.strip_prefix("instance:"),
        &who.actor(),
        "token.revoke",
        ("token", &token.id),
        serde_json::json!({"name": token.name}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

// ---- console users ----

#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, description = "Web console users (never their passwords)", body = Vec<UserView>),
              (status = 403, description = "Not an admin token")))]
pub async fn list_users(State(hub): Hub_, who: Principal) -> ApiResult<Json<Vec<UserView>>> {
    who.require_admin()?;
    let mut views = Vec::new();
    for u in hub.store.ui_users().await? {
        let label = scope_label(&hub, &u.scope).await;
        views.push(UserView::new(&u, label));
    }
    Ok(Json(views))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, description = "Created; the password is not returned", body = UserView),
              (status = 400, description = "A field is invalid (the password: 12 characters at least)"),
              (status = 403, description = "Not an admin token"),
              (status = 409, description = "The name is taken")))]
pub async fn create_user(
    State(hub): Hub_,
    who: Principal,
    ApiJson(request): ApiJson<NewUser>,
) -> ApiResult<Created<UserView>> {
    who.require_admin()?;
    let (scope, label) = resolve_scope(&hub, &request.scope).await?;
    let user = users::create_user(&hub, &who.actor(), &request, scope, &label).await?;
    Ok(Created(UserView::new(&user, label)))
}

#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id or name")),
    responses((status = 204, description = "Deleted; its console sessions end"),
              (status = 404, description = "No such user")))]
pub async fn delete_user(
    State(hub): Hub_,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    who.require_admin()?;
    let user = hub
        .store
        .ui_user(&id)
        .await?
        .ok_or_else(|| Error::not_found(format!("there is no user {id:?}")))?;
    users::delete_user(&hub, &who.actor(), &user).await?;
    Ok(StatusCode::NO_CONTENT)
}
