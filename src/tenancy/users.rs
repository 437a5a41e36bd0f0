//! Web console users: a name and a password (argon2id, through
//! `secrets::password`) standing for a scope and role, as a token does.
//! Creating and deleting them is audited; a password is never stored,
//! logged or returned.

use serde::Deserialize;

use super::fields::check_name;
use crate::audit::{self, Actor};
use crate::error::{Error, ErrorKind};
use crate::hub::Hub;
use crate::store::{StoreError, UiUser};
use crate::util::{now, random_id};

/// Shortest password a console user may have: long passphrases beat
/// composition rules (NIST SP 800-63B §5.1.1).
pub const MIN_PASSWORD: usize = 12;
const MAX_PASSWORD: usize = 1024;

/// A console user to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Unique: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// At least 12 characters; write-only.
    pub password: String,
    /// `admin` or `instance:NAME`.
    pub scope: String,
    /// `read` or `write`.
    pub role: String,
}

/// Creates a console user; `scope` is the stored scope (`admin` or
/// `instance:ID`) and `label` how operators write it.
pub async fn create_user(
    hub: &Hub,
    actor: &Actor,
    request: &NewUser,
    scope: String,
    label: &str,
) -> Result<UiUser, Error> {
    check_name("user", &request.name)?;
    if !matches!(request.role.as_str(), "read" | "write") {
        return Err(Error::invalid("role", "role must be \"read\" or \"write\""));
    }
    let length = request.password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&length) {
        return Err(Error::invalid(
            "password",
            format!("the password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long"),
        ));
    }
    let password_hash = crate::secrets::password::hash(request.password.clone())
        .await
        .ok_or_else(|| Error::internal("hashing a password", "the hashing task failed"))?;
    let user = UiUser {
        id: random_id(),
        name: request.name.clone(),
        password_hash,
        scope,
        role: request.role.clone(),
        created_by: actor.label(),
        created_at: now(),
        failed_logins: 0,
        locked_until: 0,
    };
    hub.store.insert_ui_user(&user).await?;
    audit::record(
        hub,
        user.scope.strip_prefix("instance:"),
        actor,
        "user.create",
        ("user", &user.id),
        serde_json::json!({"name": user.name, "scope": label, "role": user.role}),
    )
    .await;
    Ok(user)
}

/// Deletes a console user; its sessions end with it.
pub async fn delete_user(hub: &Hub, actor: &Actor, user: &UiUser) -> Result<(), Error> {
    match hub.store.delete_ui_user(&user.id).await {
        Ok(()) => {}
        Err(StoreError::Guard) => {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("there is no user {:?}", user.name),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    audit::record(
        hub,
        user.scope.strip_prefix("instance:"),
        actor,
        "user.delete",
        ("user", &user.id),
        serde_json::json!({"name": user.name}),
    )
    .await;
    Ok(())
}
