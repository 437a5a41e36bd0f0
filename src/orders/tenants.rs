//! Instances and their access keys: creating, changing and retiring them,
//! with every field checked before anything is written, and the policy an
//! access key imposes on the accounts bound to it.

use serde::Deserialize;
use serde_json::json;

use super::audit::{self, Actor};
use crate::error::{Error, ErrorKind};
use crate::hub::Hub;
use crate::policy::{AccessPolicy, RateLimits, ValidationMode};
use crate::store::{AccessKey, AccessKeyStatus, Account, Instance, StoreError};
use crate::util::{b64, now, parse_rfc3339, random_bytes, random_id};
use crate::validation::ChallengeType;

/// Longest description accepted.
const MAX_DESCRIPTION: usize = 1000;
/// Most patterns one access key may list.
const MAX_PATTERNS: usize = 1000;
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

/// Distinguishes an explicit `null` (Some(None)) from an absent field (None).
pub(super) fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
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

pub(super) fn validate_description(text: &str) -> Result<(), Error> {
    if text.chars().count() > MAX_DESCRIPTION {
        return Err(Error::invalid(
            "description",
            format!("the description is longer than {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(())
}

/// `production` or `staging`.
pub fn check_environment(text: &str, field: &str) -> Result<String, Error> {
    match text {
        "production" | "staging" => Ok(text.to_string()),
        other => Err(Error::invalid(
            field,
            format!("{field} {other:?} is unknown; use \"production\" or \"staging\""),
        )),
    }
}

/// Applies `settings` to `instance`, checking each field.
fn apply_settings(instance: &mut Instance, settings: &InstanceSettings) -> Result<(), Error> {
    if let Some(description) = &settings.description {
        validate_description(description)?;
        instance.description = description.clone();
    }
    if let Some(issuer) = &settings.issuer {
        match issuer.as_str() {
            "local" | "upstream" => instance.issuer = issuer.clone(),
            other => {
                return Err(Error::invalid(
                    "issuer",
                    format!("issuer {other:?} is unknown; use \"local\" or \"upstream\""),
                ));
            }
        }
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
            if !seen.contains(&kind.as_str().to_string()) {
                seen.push(kind.as_str().to_string());
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

/// Whether `instance` may reach private and loopback targets: its own
/// setting, else the hub's `[validation] allow_private_targets`.
pub fn private_targets_allowed(hub: &Hub, instance: &Instance) -> bool {
    instance
        .allow_private_targets
        .unwrap_or(hub.config.validation.allow_private_targets)
}

/// The addresses `host:port` reaches, each allowed by the instance's
/// target policy (the validator's, with the instance's private-target
/// setting); otherwise the first refusal ("... refused by policy"). Names
/// go through the hub's resolvers; a name that does not resolve gives no
/// address and no refusal.
pub async fn policed_addresses(
    hub: &Hub,
    instance: &Instance,
    host: &str,
    port: u16,
) -> Result<Vec<std::net::SocketAddr>, String> {
    let policy =
        hub.validator
            .policy()
            .with_private(crate::orders::tenants::private_targets_allowed(
                hub, instance,
            ));
    let ips = match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => hub
            .validator
            .resolver()
            .lookup_ips(host)
            .await
            .unwrap_or_default(),
    };
    let addresses: Vec<_> = ips
        .into_iter()
        .map(|ip| std::net::SocketAddr::new(ip, port))
        .collect();
    for address in &addresses {
        policy.check(*address)?;
    }
    Ok(addresses)
}

/// An outbound target (a notification channel's host, a CA directory, a
/// DNS server) set by an instance-scoped token: 400 on `field` when the
/// instance's policy refuses where it leads; `what` names the target in the
/// error. Hub-wide tokens may set any target (an operator's own choice).
pub async fn check_outbound_target(
    hub: &Hub,
    instance: &Instance,
    host: &str,
    port: u16,
    field: &'static str,
    what: &str,
) -> Result<(), Error> {
    policed_addresses(hub, instance, host, port)
        .await
        .map(|_| ())
        .map_err(|why| {
            let named = match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
                Ok(_) => why,
                Err(_) => format!("{host}: {why}"),
            };
            Error::invalid(
                field,
                format!("{named}; only a hub-wide token may set such a {what}"),
            )
        })
}

/// [`check_outbound_target`] for a URL (http or https, default ports).
pub async fn check_outbound_url(
    hub: &Hub,
    instance: &Instance,
    url: &str,
    field: &'static str,
    what: &str,
) -> Result<(), Error> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::invalid(field, format!("{field} is not a URL: {e}")))?;
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return Err(Error::invalid(field, format!("{field} names no host")));
    };
    check_outbound_target(hub, instance, host, port, field, what).await
}

/// The outbound targets in a DNS credential's config: a `server`
/// (`host:port`, port 53 when left out) and any http(s) URL, each checked as
/// [`check_outbound_target`] does.
pub async fn check_credential_targets(
    hub: &Hub,
    instance: &Instance,
    config: &serde_json::Value,
) -> Result<(), Error> {
    let Some(fields) = config.as_object() else {
        return Ok(());
    };
    for (key, value) in fields {
        let Some(text) = value.as_str() else {
            continue;
        };
        if text.starts_with("http://") || text.starts_with("https://") {
            check_outbound_url(hub, instance, text, "config", "DNS provider endpoint").await?;
        } else if key == "server" {
            let (host, port) = match text.parse::<std::net::SocketAddr>() {
                Ok(a) => (a.ip().to_string(), a.port()),
                Err(_) => match text.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
                    Some((h, Ok(p))) => (h.to_string(), p),
                    _ => (text.to_string(), 53),
                },
            };
            check_outbound_target(hub, instance, &host, port, "config", "DNS server").await?;
        }
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
        issuer: "local".into(),
        external_account_required: false,
        cert_validity_days: None,
        allowed_challenges: ChallengeType::ALL
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        rate_limits: RateLimits::default(),
        environment: "production".into(),
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
        json!({"name": instance.name, "issuer": instance.issuer,
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
        .map(String::as_str)
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

/// Checks the name of an access key, credential or token (`what`): 1 to 64
/// letters, digits, `.`, `_` or `-`.
pub fn check_name(what: &str, name: &str) -> Result<(), Error> {
    if crate::util::is_token(name) {
        Ok(())
    } else {
        Err(Error::invalid(
            "name",
            format!("{what} name {name:?} must be 1 to 64 letters, digits, '.', '_' or '-'"),
        ))
    }
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
        key.status = match status.as_str() {
            "active" => AccessKeyStatus::Active,
            "disabled" => AccessKeyStatus::Disabled,
            "revoked" => AccessKeyStatus::Revoked,
            other => {
                return Err(Error::invalid(
                    "status",
                    format!(
                        "status {other:?} is unknown; use \"active\", \"disabled\" or \"revoked\""
                    ),
                ));
            }
        };
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

/// 403 naming each widening, or nothing.
fn refuse_widening(widens: Vec<String>) -> Result<(), Error> {
    if widens.is_empty() {
        return Ok(());
    }
    Err(Error::unauthorized(format!(
        "{} needs a hub-wide token; this token is scoped to one instance and may only narrow \
         these settings. Nothing was changed.",
        widens.join(", and ")
    )))
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
                identifier: id.clone(),
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
