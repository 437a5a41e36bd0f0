//! Instances: creating, changing and retiring them, with every field
//! checked before anything is written, and what an instance-scoped token
//! may change.

use serde::Deserialize;
use serde_json::json;

use super::fields::{check_environment, double_option, refuse_widening, validate_description};
use crate::audit::{self, Actor};
use crate::error::{Error, ErrorKind};
use crate::hub::Hub;
use crate::policy::{ChallengeType, RateLimits};
use crate::store::{Environment, Instance, Issuer, StoreError};
use crate::util::{now, random_id};

/// Longest certificate lifetime an instance may set (the CA/B Forum's limit).
const MAX_VALIDITY_DAYS: i64 = 397;

/// Instance settings as sent to the API; on update, absent fields keep
/// their value.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceSettings {
    /// URL slug: lowercase letters, digits and inner hyphens; fixed once created.
    pub name: Option<String>,
    pub description: Option<String>,
    /// `local` (the hub's CA) or `upstream` (CA accounts, with the relay).
    pub issuer: Option<String>,
    /// newAccount must carry an External Account Binding (an access key).
    pub external_account_required: Option<bool>,
    /// Validity of issued certificates in days (1 to 397); null = the hub default.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub cert_validity_days: Option<Option<i64>>,
    /// Challenge types offered: `http-01`, `dns-01`, `tls-alpn-01`.
    pub allowed_challenges: Option<Vec<String>>,
    pub rate_limits: Option<RateLimits>,
    /// `production` (default) or `staging`: staging CA accounts never serve a
    /// production instance, nor the reverse.
    pub environment: Option<String>,
    /// With upstream issuance, move an order to the next CA account when one fails (default on).
    pub failover: Option<bool>,
    /// Whether validation, and notifications set by instance-scoped
    /// tokens, may reach private and loopback addresses; null = the hub's
    /// `[validation] allow_private_targets`. Link-local, multicast and the
    /// hub's own listeners are never reached. Only a hub-wide token may
    /// allow more than the instance has.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<bool>)]
    pub allow_private_targets: Option<Option<bool>>,
}

/// Checks an instance name: a DNS-label-like URL slug.
pub fn validate_instance_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "name",
            format!(
                "instance name {name:?} must be 1 to 63 lowercase letters, digits or inner hyphens"
            ),
        ))
    }
}

/// Applies `settings` to `instance`, checking each field.
fn apply_settings(instance: &mut Instance, settings: &InstanceSettings) -> Result<(), Error> {
    if let Some(description) = &settings.description {
        validate_description(description)?;
        instance.description = description.clone();
    }
    if let Some(issuer) = &settings.issuer {
        instance.issuer = Issuer::from_text(issuer).ok_or_else(|| {
            Error::invalid(
                "issuer",
                format!("issuer {issuer:?} is unknown; use \"local\" or \"upstream\""),
            )
        })?;
    }
    if let Some(required) = settings.external_account_required {
        instance.external_account_required = required;
    }
    if let Some(days) = settings.cert_validity_days {
        if let Some(d) = days {
            if !(1..=MAX_VALIDITY_DAYS).contains(&d) {
                return Err(Error::invalid(
                    "cert_validity_days",
                    format!("cert_validity_days must be 1 to {MAX_VALIDITY_DAYS}, or null"),
                ));
            }
        }
        instance.cert_validity_days = days;
    }
    if let Some(challenges) = &settings.allowed_challenges {
        if challenges.is_empty() {
            return Err(Error::invalid(
                "allowed_challenges",
                "allowed_challenges must name at least one challenge type",
            ));
        }
        let mut seen = Vec::new();
        for c in challenges {
            let kind: ChallengeType = c.parse().map_err(|_| {
                Error::invalid(
                    "allowed_challenges",
                    format!("{c:?} is not a challenge type; use http-01, dns-01 or tls-alpn-01"),
                )
            })?;
            if !seen.contains(&kind) {
                seen.push(kind);
            }
        }
        instance.allowed_challenges = seen;
    }
    if let Some(limits) = settings.rate_limits {
        instance.rate_limits = limits;
    }
    if let Some(environment) = &settings.environment {
        instance.environment = check_environment(environment, "environment")?;
    }
    if let Some(failover) = settings.failover {
        instance.failover = failover;
    }
    if let Some(allow) = settings.allow_private_targets {
        instance.allow_private_targets = allow;
    }
    Ok(())
}

/// Creates an instance from its settings (`name` required).
pub async fn create_instance(
    hub: &Hub,
    actor: &Actor,
    settings: &InstanceSettings,
) -> Result<Instance, Error> {
    let name = settings
        .name
        .clone()
        .ok_or_else(|| Error::invalid("name", "name is required"))?;
    validate_instance_name(&name)?;
    let now = now();
    let mut instance = Instance {
        id: random_id(),
        name,
        description: String::new(),
        issuer: Issuer::Local,
        external_account_required: false,
        cert_validity_days: None,
        allowed_challenges: ChallengeType::DEFAULT.to_vec(),
        rate_limits: RateLimits::default(),
        environment: Environment::Production,
        failover: true,
        allow_private_targets: None,
        created_at: now,
        updated_at: now,
    };
    apply_settings(&mut instance, settings)?;
    hub.store.insert_instance(&instance).await?;
    audit::record(
        hub,
        Some(&instance.id),
        actor,
        "instance.create",
        ("instance", &instance.id),
        json!({"name": instance.name, "issuer": instance.issuer.as_str(),
               "external_account_required": instance.external_account_required}),
    )
    .await;
    tracing::info!(instance = %instance.name, "instance created");
    Ok(instance)
}

/// Changes an instance's settings; its name stays.
pub async fn update_instance(
    hub: &Hub,
    actor: &Actor,
    instance: &Instance,
    settings: &InstanceSettings,
) -> Result<Instance, Error> {
    if settings.name.as_ref().is_some_and(|n| *n != instance.name) {
        return Err(Error::invalid(
            "name",
            "an instance cannot be renamed: its name is part of every ACME URL it handed out",
        ));
    }
    let mut updated = instance.clone();
    apply_settings(&mut updated, settings)?;
    updated.updated_at = now();
    hub.store
        .update_instance(&updated)
        .await
        .map_err(|e| match e {
            StoreError::Guard => Error::not_found("the instance was deleted meanwhile"),
            other => other.into(),
        })?;
    hub.forget_instance(&instance.name);
    audit::record(
        hub,
        Some(&instance.id),
        actor,
        "instance.update",
        ("instance", &instance.id),
        serde_json::to_value(ChangedFields::of(settings)).unwrap_or_default(),
    )
    .await;
    Ok(updated)
}

/// What a change to an instance's settings would open up that an admin
/// had closed, in words; empty when it only narrows. These are the
/// instance's guards against the outside and its share of the hub: who may
/// register (EAB), how long certificates from the shared CA live, which
/// proofs the validator accepts, how much work a client may ask for.
pub fn instance_widening(default_days: i64, before: &Instance, after: &Instance) -> Vec<String> {
    let mut widens = Vec::new();
    if before.external_account_required && !after.external_account_required {
        widens.push("turning off external_account_required".to_string());
    }
    // Unset follows the hub's default, which an operator may turn to allow
    // later: only an explicit `false` (or the value already stored) narrows.
    if after.allow_private_targets != before.allow_private_targets
        && after.allow_private_targets != Some(false)
    {
        widens.push("letting the instance's validation reach private and loopback targets (allow_private_targets true or unset)".to_string());
    }
    let days = |i: &Instance| i.cert_validity_days.unwrap_or(default_days);
    if days(after) > days(before) {
        widens.push(format!(
            "a longer certificate lifetime ({} days, was {})",
            days(after),
            days(before)
        ));
    }
    let added: Vec<&str> = after
        .allowed_challenges
        .iter()
        .filter(|c| !before.allowed_challenges.contains(c))
        .map(|c| c.as_str())
        .collect();
    if !added.is_empty() {
        widens.push(format!(
            "offering more challenge types ({})",
            added.join(", ")
        ));
    }
    // 0 means no limit: the widest of all.
    let raised = |old: u32, new: u32| old != 0 && (new == 0 || new > old);
    let (old, new) = (before.rate_limits, after.rate_limits);
    if raised(old.orders_per_hour, new.orders_per_hour)
        || raised(
            old.failed_validations_per_hour,
            new.failed_validations_per_hour,
        )
        || raised(old.requests_per_second, new.requests_per_second)
    {
        widens.push("raising or lifting a rate limit".into());
    }
    widens
}

/// Refuses (403, nothing changed) a change to an instance's settings that
/// widens them ([`instance_widening`]) unless the caller's token reaches
/// the whole hub.
pub fn check_instance_rights(
    hub: &Hub,
    instance: &Instance,
    settings: &InstanceSettings,
    hub_wide: bool,
) -> Result<(), Error> {
    if hub_wide {
        return Ok(());
    }
    let mut after = instance.clone();
    apply_settings(&mut after, settings)?;
    let default_days = i64::from(hub.config.ca.leaf_validity_days);
    refuse_widening(instance_widening(default_days, instance, &after))
}

/// The names of the fields a change touched, for the audit log.
#[derive(serde::Serialize)]
struct ChangedFields {
    changed: Vec<&'static str>,
}

impl ChangedFields {
    fn of(s: &InstanceSettings) -> Self {
        let mut changed = Vec::new();
        let mut note = |set: bool, name| {
            if set {
                changed.push(name)
            }
        };
        note(s.description.is_some(), "description");
        note(s.issuer.is_some(), "issuer");
        note(
            s.external_account_required.is_some(),
            "external_account_required",
        );
        note(s.cert_validity_days.is_some(), "cert_validity_days");
        note(s.allowed_challenges.is_some(), "allowed_challenges");
        note(s.rate_limits.is_some(), "rate_limits");
        note(s.environment.is_some(), "environment");
        note(s.failover.is_some(), "failover");
        note(s.allow_private_targets.is_some(), "allow_private_targets");
        Self { changed }
    }
}

/// Deletes an instance that holds nothing: no account, access key or
/// certificate (409 otherwise, saying what it still holds).
pub async fn delete_instance(hub: &Hub, actor: &Actor, instance: &Instance) -> Result<(), Error> {
    match hub.store.delete_instance(&instance.id).await {
        Ok(()) => {}
        Err(StoreError::Guard) => {
            let usage = hub.store.instance_usage(&instance.id).await?;
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "instance {:?} still holds {} accounts, {} access keys, {} certificates and {} \
                     other settings (credentials, zones, delegations, CA accounts, managed \
                     certificates, channels); an instance is deleted only when empty, so that no \
                     record is lost",
                    instance.name,
                    usage.accounts,
                    usage.access_keys,
                    usage.certificates,
                    usage.settings
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    hub.forget_instance(&instance.name);
    audit::record(
        hub,
        Some(&instance.id),
        actor,
        "instance.delete",
        ("instance", &instance.id),
        json!({"name": instance.name}),
    )
    .await;
    tracing::info!(instance = %instance.name, "instance deleted");
    Ok(())
}
