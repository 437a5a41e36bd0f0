//! Who is asking: bearer tokens and console users stand for a principal
//! with a scope (the whole hub or one instance) and a role (read or write).
//! Only SHA-256 hashes of tokens are kept (`secrets::token_hash`); a failed
//! check says nothing about why.

use crate::audit::Actor;
use crate::error::Error;
use crate::hub::Hub;
use crate::secrets::token_hash;
use crate::store::Instance;

/// What a token may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every instance and the hub-wide resources (tokens, instance creation).
    Admin,
    /// One instance, by id.
    Instance(String),
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Read,
    Write,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            _ => None,
        }
    }
}

/// The authenticated caller of an admin request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's name (`bootstrap` for the admin token), or the console
    /// user's.
    pub name: String,
    pub scope: Scope,
    pub role: Role,
    /// A console user (signed in with a password), not a token.
    pub user: bool,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        if self.user {
            Actor::User(self.name.clone())
        } else {
            Actor::Token(self.name.clone())
        }
    }

    pub fn sees(&self, instance: &Instance) -> bool {
        match &self.scope {
            Scope::Admin => true,
            Scope::Instance(id) => *id == instance.id,
        }
    }

    /// 403 unless the token may write.
    pub fn require_write(&self) -> Result<(), Error> {
        match self.role {
            Role::Write => Ok(()),
            Role::Read => Err(Error::unauthorized("this token is read-only")),
        }
    }

    /// 403 unless the token reaches the whole hub.
    pub fn require_admin(&self) -> Result<(), Error> {
        match self.scope {
            Scope::Admin => Ok(()),
            Scope::Instance(_) => Err(Error::unauthorized(
                "this token is scoped to one instance; this needs an admin token",
            )),
        }
    }

    /// The instance named by a path segment (id or name), if this token sees
    /// it: 404 otherwise, so that other instances' names do not leak.
    pub async fn instance(&self, hub: &Hub, id_or_name: &str) -> Result<Instance, Error> {
        hub.store
            .instance_by_ref(id_or_name)
            .await?
            .filter(|i| self.sees(i))
            .ok_or_else(|| Error::not_found(format!("there is no instance {id_or_name:?}")))
    }
}

/// Parses a stored scope text: `admin` or `instance:ID`.
fn parse_scope(text: &str) -> Option<Scope> {
    match text {
        "admin" => Some(Scope::Admin),
        other => other
            .strip_prefix("instance:")
            .map(|id| Scope::Instance(id.to_string())),
    }
}

/// The token of a request: `Authorization: Bearer TOKEN`, or HTTP Basic
/// with the token as password (for clients such as lego's httpreq that only
/// speak Basic).
pub fn request_token(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    let token = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().to_string()
    } else if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        text.split_once(':')?.1.to_string()
    } else {
        return None;
    };
    (!token.is_empty()).then_some(token)
}

/// Who a token is: its principal, and the stored token's id (none for the
/// bootstrap token); none when it stands for no unrevoked token.
pub async fn identify(
    hub: &Hub,
    token: &str,
) -> Result<Option<(Principal, Option<String>)>, Error> {
    let hash = token_hash(token);
    // Comparing digests, not secrets: timing reveals nothing about the token.
    if hash == hub.admin_token_hash {
        return Ok(Some((bootstrap(), None)));
    }
    let stored = hub.store.token_by_hash(&hash).await?;
    match stored {
        Some(t) => Ok(Some((principal_for_token(&t)?, Some(t.id)))),
        None => Ok(None),
    }
}

/// The bootstrap admin token's principal.
pub fn bootstrap() -> Principal {
    Principal {
        name: "bootstrap".into(),
        scope: Scope::Admin,
        role: Role::Write,
        user: false,
    }
}

/// The principal of a stored API token (checked unrevoked by the caller).
pub fn principal_for_token(token: &crate::store::ApiToken) -> Result<Principal, Error> {
    stored_principal(token.name.clone(), &token.scope, &token.role, false)
}

/// The principal of a console user (whose password was checked).
pub fn principal_for_user(user: &crate::store::UiUser) -> Result<Principal, Error> {
    stored_principal(user.name.clone(), &user.scope, &user.role, true)
}

fn stored_principal(name: String, scope: &str, role: &str, user: bool) -> Result<Principal, Error> {
    let scope = parse_scope(scope)
        .ok_or_else(|| Error::internal("reading a principal", "stored scope is invalid"))?;
    let role = Role::parse(role)
        .ok_or_else(|| Error::internal("reading a principal", "stored role is invalid"))?;
    Ok(Principal {
        name,
        scope,
        role,
        user,
    })
}

/// Checks a requested token scope (`admin` or `instance:NAME`) and returns
/// the text to store (`admin` or `instance:ID`) with the instance name.
pub async fn resolve_scope(hub: &Hub, requested: &str) -> Result<(String, String), Error> {
    if requested == "admin" {
        return Ok(("admin".into(), "admin".into()));
    }
    let Some(name) = requested.strip_prefix("instance:") else {
        return Err(Error::invalid(
            "scope",
            format!("scope {requested:?} is invalid; use \"admin\" or \"instance:NAME\""),
        ));
    };
    let instance = hub
        .store
        .instance_by_ref(name)
        .await?
        .ok_or_else(|| Error::invalid("scope", format!("there is no instance {name:?}")))?;
    Ok((
        format!("instance:{}", instance.id),
        format!("instance:{}", instance.name),
    ))
}
