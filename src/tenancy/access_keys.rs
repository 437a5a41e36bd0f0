//! Access keys (External Account Binding keys of an instance): creating,
//! changing and revoking them, and the policy a key imposes on the
//! accounts bound to it (which identifiers, wildcards, validation).

use serde::Deserialize;
use serde_json::json;

use super::fields::{check_name, double_option, refuse_widening, validate_description};
use crate::audit::{self, Actor};
use crate::error::{Error, ErrorKind};
use crate::hub::Hub;
use crate::policy::{AccessPolicy, ValidationMode};
use crate::store::{AccessKey, AccessKeyStatus, Account, Instance, StoreError};
use crate::util::{b64, now, parse_rfc3339, random_bytes, random_id};

/// Most patterns one access key may list.
const MAX_PATTERNS: usize = 1000;
/// An access key as sent to the API; on update, absent fields keep their value.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessKeySettings {
    /// Unique within the instance: letters, digits, `.`, `_`, `-`; fixed once created.
    pub name: Option<String>,
    pub description: Option<String>,
    /// `example.com` (that name), `*.example.com` (names under it), `10.0.0.0/8` (IPs).
    pub allowed_identifiers: Option<Vec<String>>,
    /// Whether wildcard names (`*.x`) may be ordered.
    pub allow_wildcard: Option<bool>,
    pub validation: Option<ValidationMode>,
    /// RFC 3339; after it the key binds no account and its accounts cannot order.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Option<String>>,
    /// `active`, `disabled` or `revoked` (update only; revoking is final, as with DELETE).
    pub status: Option<String>,
}

fn apply_key_settings(key: &mut AccessKey, s: &AccessKeySettings, now: i64) -> Result<(), Error> {
    if let Some(description) = &s.description {
        validate_description(description)?;
        key.description = description.clone();
    }
    if let Some(patterns) = &s.allowed_identifiers {
        if patterns.len() > MAX_PATTERNS {
            return Err(Error::invalid(
                "allowed_identifiers",
                format!("at most {MAX_PATTERNS} patterns are allowed"),
            ));
        }
        let parsed = AccessPolicy::parse_patterns(patterns)
            .map_err(|why| Error::invalid("allowed_identifiers", why))?;
        key.allowed_identifiers = parsed.iter().map(|p| p.to_string()).collect();
    }
    if let Some(wildcard) = s.allow_wildcard {
        key.allow_wildcard = wildcard;
    }
    if let Some(mode) = s.validation {
        key.validation = mode;
    }
    if let Some(expires) = &s.expires_at {
        key.expires_at = match expires {
            None => None,
            Some(text) => {
                let at = parse_rfc3339(text).ok_or_else(|| {
                    Error::invalid("expires_at", "expires_at must be an RFC 3339 timestamp")
                })?;
                if at <= now {
                    return Err(Error::invalid(
                        "expires_at",
                        "expires_at must be in the future",
                    ));
                }
                Some(at)
            }
        };
    }
    if let Some(status) = &s.status {
        key.status = AccessKeyStatus::from_text(status).ok_or_else(|| {
            Error::invalid(
                "status",
                format!(
                    "status {status:?} is unknown; use \"active\", \"disabled\" or \"revoked\""
                ),
            )
        })?;
    }
    Ok(())
}

/// What a change to an access key would let it do that it could not before,
/// in words; empty when the change only narrows it (or leaves it as it was).
///
/// These are the changes only a hub-wide token may make, on every key: an
/// admin who disabled a key, or gave it an expiry, has decided that the
/// accounts bound to it stop (or will stop) ordering, and a token of the
/// instance must not undo that. Pre-authorized keys make the CA issue
/// without proof, so turning that on counts too. A revoked key gains
/// nothing (revocation is final).
pub fn access_key_widening(before: &AccessKey, after: &AccessKey) -> Vec<String> {
    let mut widens = Vec::new();
    if after.status == AccessKeyStatus::Revoked {
        return widens;
    }
    if before.validation != ValidationMode::PreAuthorized
        && after.validation == ValidationMode::PreAuthorized
    {
        widens.push("switching an access key to pre-authorized validation".into());
    }
    if before.status != AccessKeyStatus::Active && after.status == AccessKeyStatus::Active {
        widens.push("re-enabling a disabled access key".into());
    }
    match (before.expires_at, after.expires_at) {
        (Some(_), None) => widens.push("removing an access key's expiry".into()),
        (Some(old), Some(new)) if new > old => {
            widens.push("moving an access key's expiry later".into())
        }
        _ => {}
    }
    // Stored patterns were parsed when saved; one that no longer parses
    // covers nothing, so anything added against it counts as wider.
    let parse = |texts: &[String]| -> Vec<crate::policy::Pattern> {
        texts
            .iter()
            .filter_map(|t| crate::policy::Pattern::parse(t).ok())
            .collect()
    };
    let old = parse(&before.allowed_identifiers);
    let added: Vec<String> = parse(&after.allowed_identifiers)
        .iter()
        .filter(|p| !old.iter().any(|o| p.within(o)))
        .map(|p| p.to_string())
        .collect();
    if !added.is_empty() {
        widens.push(format!(
            "allowing an access key more identifiers ({})",
            added.join(", ")
        ));
    }
    if after.allow_wildcard && !before.allow_wildcard {
        widens.push("allowing wildcard names to an access key".into());
    }
    widens
}

/// Refuses (403, nothing changed) a new access key or a change to one
/// that widens what it may have issued without proof
/// ([`access_key_widening`]) unless the caller's token reaches the whole
/// hub: an instance-scoped token may narrow such a key, never widen it.
pub fn check_access_key_rights(
    settings: &AccessKeySettings,
    existing: Option<&AccessKey>,
    hub_wide: bool,
) -> Result<(), Error> {
    if hub_wide {
        return Ok(());
    }
    let widens = match existing {
        Some(key) => {
            let mut after = key.clone();
            apply_key_settings(&mut after, settings, now())?;
            access_key_widening(key, &after)
        }
        // Whatever else it allows, a new challenge-mode key is one that
        // any token of the instance may make.
        None if settings.validation == Some(ValidationMode::PreAuthorized) => {
            vec!["creating a pre-authorized access key".to_string()]
        }
        None => Vec::new(),
    };
    refuse_widening(widens)
}

/// Creates an access key. Returns it with its HMAC key (base64url), which is
/// shown this once.
pub async fn create_access_key(
    hub: &Hub,
    actor: &Actor,
    instance: &Instance,
    settings: &AccessKeySettings,
) -> Result<(AccessKey, String), Error> {
    let name = settings
        .name
        .clone()
        .ok_or_else(|| Error::invalid("name", "name is required"))?;
    check_name("access key", &name)?;
    if settings.allowed_identifiers.is_none() {
        return Err(Error::invalid(
            "allowed_identifiers",
            "allowed_identifiers is required: the names this key may order",
        ));
    }
    if settings.status.is_some() {
        return Err(Error::invalid(
            "status",
            "a new access key is always active",
        ));
    }
    let now = now();
    // A key whose base64url starts with '-' reads as an option to certbot and
    // lego (`--eab-hmac-key -x...`): draw again (one in 64 keys).
    let hmac_key = loop {
        let key = random_bytes::<32>();
        if !b64(&key).starts_with('-') {
            break key.to_vec();
        }
    };
    let id = random_id();
    let sealed = hub.secrets.seal(
        &hmac_key,
        &crate::secrets::owner("access-key", &instance.id, &id),
    );
    let mut key = AccessKey {
        id,
        instance_id: instance.id.clone(),
        name,
        description: String::new(),
        kid: format!("kid-{}", random_id()),
        hmac_key: sealed,
        allowed_identifiers: Vec::new(),
        allow_wildcard: false,
        validation: ValidationMode::Challenge,
        expires_at: None,
        status: AccessKeyStatus::Active,
        created_at: now,
        updated_at: now,
    };
    apply_key_settings(&mut key, settings, now)?;
    hub.store.insert_access_key(&key).await?;
    audit::record(
        hub,
        Some(&instance.id),
        actor,
        "access-key.create",
        ("access-key", &key.id),
        json!({"name": key.name, "kid": key.kid, "allowed_identifiers": key.allowed_identifiers,
               "allow_wildcard": key.allow_wildcard, "validation": key.validation.as_str()}),
    )
    .await;
    Ok((key, b64(&hmac_key)))
}

/// Changes an access key (not its name, kid or HMAC key). Revocation is final.
pub async fn update_access_key(
    hub: &Hub,
    actor: &Actor,
    key: &AccessKey,
    settings: &AccessKeySettings,
) -> Result<AccessKey, Error> {
    if settings.name.as_ref().is_some_and(|n| *n != key.name) {
        return Err(Error::invalid("name", "an access key cannot be renamed"));
    }
    if key.status == AccessKeyStatus::Revoked {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("access key {:?} is revoked; revocation is final", key.name),
        ));
    }
    let now = now();
    let mut updated = key.clone();
    apply_key_settings(&mut updated, settings, now)?;
    updated.updated_at = now;
    hub.store
        .update_access_key(&updated)
        .await
        .map_err(|e| match e {
            StoreError::Guard => Error::new(
                ErrorKind::Conflict,
                format!("access key {:?} was revoked meanwhile", key.name),
            ),
            other => other.into(),
        })?;
    let action = match (key.status, updated.status) {
        (a, b) if a == b => "access-key.update",
        (_, AccessKeyStatus::Revoked) => "access-key.revoke",
        (_, AccessKeyStatus::Disabled) => "access-key.disable",
        _ => "access-key.enable",
    };
    audit::record(
        hub,
        Some(&key.instance_id),
        actor,
        action,
        ("access-key", &key.id),
        json!({"name": key.name, "status": updated.status.as_str()}),
    )
    .await;
    Ok(updated)
}

/// Revokes an access key: its accounts can no longer order.
pub async fn revoke_access_key(
    hub: &Hub,
    actor: &Actor,
    key: &AccessKey,
) -> Result<AccessKey, Error> {
    update_access_key(
        hub,
        actor,
        key,
        &AccessKeySettings {
            status: Some("revoked".into()),
            ..Default::default()
        },
    )
    .await
}

/// Why an access key cannot be used now, if it cannot.
pub fn key_unusable(key: &AccessKey, now: i64) -> Option<String> {
    match key.status {
        AccessKeyStatus::Revoked => Some(format!("access key {:?} was revoked", key.name)),
        AccessKeyStatus::Disabled => Some(format!("access key {:?} is disabled", key.name)),
        AccessKeyStatus::Active if key.expires_at.is_some_and(|at| at <= now) => {
            Some(format!("access key {:?} has expired", key.name))
        }
        AccessKeyStatus::Active => None,
    }
}

/// The policy the account's access key imposes (`None` for an account
/// registered without one at an instance that does not require one).
/// `unauthorized` when the key may no longer be used.
pub async fn account_policy(
    hub: &Hub,
    instance: &Instance,
    account: &Account,
) -> Result<Option<AccessPolicy>, Error> {
    let Some(key_id) = &account.access_key_id else {
        if instance.external_account_required {
            // Registered before the instance required EAB: no policy covers it.
            return Err(Error::new(
                ErrorKind::ExternalAccountRequired,
                format!(
                    "instance {:?} requires an external account binding, and this account has \
                     none: send newAccount again with an access key's binding to bind it",
                    instance.name
                ),
            ));
        }
        return Ok(None);
    };
    let key = hub
        .store
        .access_key(&account.instance_id, key_id)
        .await?
        .ok_or_else(|| Error::internal("loading the access key", "account names a missing key"))?;
    if let Some(why) = key_unusable(&key, now()) {
        return Err(Error::unauthorized(format!(
            "{why}: accounts registered with it can no longer order certificates"
        )));
    }
    let patterns = AccessPolicy::parse_patterns(&key.allowed_identifiers)
        .map_err(|e| Error::internal("loading the access key policy", e))?;
    Ok(Some(AccessPolicy {
        key_name: key.name,
        patterns,
        allow_wildcard: key.allow_wildcard,
        validation: key.validation,
    }))
}

/// Checks every identifier against the policy: `rejectedIdentifier` with one
/// subproblem per refused identifier, naming the rule that refused it.
pub fn check_identifiers(
    policy: &AccessPolicy,
    identifiers: &[crate::policy::Identifier],
) -> Result<(), Error> {
    let refused: Vec<crate::error::Subproblem> = identifiers
        .iter()
        .filter_map(|id| {
            policy.refusal(id).map(|detail| crate::error::Subproblem {
                kind: ErrorKind::RejectedIdentifier,
                detail,
                identifier: id.into(),
            })
        })
        .collect();
    match refused.len() {
        0 => Ok(()),
        1 => Err(
            Error::new(ErrorKind::RejectedIdentifier, refused[0].detail.clone())
                .with_subproblems(refused),
        ),
        n => Err(Error::new(
            ErrorKind::RejectedIdentifier,
            format!(
                "{n} identifiers are not allowed by access key {:?}: {}",
                policy.key_name,
                refused
                    .iter()
                    .map(|s| s.identifier.value.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_subproblems(refused)),
    }
}
