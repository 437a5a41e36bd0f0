//! What the admin API returns: stored records rendered for operators, with
//! times as RFC 3339 and never a secret (the one-time key and token views
//! are the only ones that carry one, once).

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::hub::Hub;
use crate::orders::{effective_authz_status, effective_order_status};
use crate::policy::{Identifier, RateLimits, ValidationMode};
use crate::store::{
    AccessKey, ApiToken, Authorization, Certificate, CertificateStatus, DnsZone, Event, Instance,
    Order, UpstreamOrder,
};
use crate::util::rfc3339;

fn time(at: i64) -> String {
    rfc3339(at)
}

/// A page of a listing; `next_offset` is set when more items follow.
#[derive(Debug, Serialize, ToSchema)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub next_offset: Option<i64>,
}

impl<T> Listing<T> {
    /// `items` was fetched with `limit + 1`, so an extra item means more follow.
    pub fn page(mut items: Vec<T>, limit: i64, offset: i64) -> Self {
        let more = items.len() as i64 > limit;
        items.truncate(limit as usize);
        Self {
            items,
            next_offset: more.then_some(offset + limit),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub issuer: String,
    pub external_account_required: bool,
    /// As set; null means the hub default (`effective_cert_validity_days`).
    pub cert_validity_days: Option<i64>,
    pub effective_cert_validity_days: i64,
    pub allowed_challenges: Vec<String>,
    pub rate_limits: RateLimits,
    pub environment: String,
    pub failover: bool,
    /// As set; null means the hub default (`effective_allow_private_targets`).
    pub allow_private_targets: Option<bool>,
    /// Whether validation may reach private and loopback addresses.
    pub effective_allow_private_targets: bool,
    /// Where ACME clients point.
    pub directory_url: String,
    pub created_at: String,
    pub updated_at: String,
}

impl InstanceView {
    pub fn new(hub: &Hub, i: &Instance) -> Self {
        Self {
            id: i.id.clone(),
            name: i.name.clone(),
            description: i.description.clone(),
            issuer: i.issuer.as_str().to_string(),
            external_account_required: i.external_account_required,
            cert_validity_days: i.cert_validity_days,
            effective_cert_validity_days: crate::orders::validity_days(hub, i),
            allowed_challenges: i
                .allowed_challenges
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
            rate_limits: i.rate_limits,
            environment: i.environment.as_str().to_string(),
            failover: i.failover,
            allow_private_targets: i.allow_private_targets,
            effective_allow_private_targets: crate::tenancy::outbound::private_targets_allowed(
                hub, i,
            ),
            directory_url: hub.directory_url(&i.name),
            created_at: time(i.created_at),
            updated_at: time(i.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccessKeyView {
    pub id: String,
    pub name: String,
    pub description: String,
    /// The EAB key identifier clients pass (`--eab-kid`).
    pub kid: String,
    pub allowed_identifiers: Vec<String>,
    pub allow_wildcard: bool,
    pub validation: ValidationMode,
    pub expires_at: Option<String>,
    /// `active`, `disabled` or `revoked`.
    pub status: String,
    /// Accounts registered with this key.
    pub accounts: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl AccessKeyView {
    pub fn new(k: &AccessKey, accounts: i64) -> Self {
        Self {
            id: k.id.clone(),
            name: k.name.clone(),
            description: k.description.clone(),
            kid: k.kid.clone(),
            allowed_identifiers: k.allowed_identifiers.clone(),
            allow_wildcard: k.allow_wildcard,
            validation: k.validation,
            expires_at: k.expires_at.map(time),
            status: k.status.as_str().to_string(),
            accounts,
            created_at: time(k.created_at),
            updated_at: time(k.updated_at),
        }
    }
}

/// A new access key: the only response that carries its HMAC key.
#[derive(Serialize, ToSchema)]
pub struct NewAccessKeyView {
    #[serde(flatten)]
    pub key: AccessKeyView,
    /// base64url HMAC key (`--eab-hmac-key`); shown this once.
    pub hmac_key: String,
    pub directory_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    /// `admin` or `instance:NAME`.
    pub scope: String,
    /// `read` or `write`.
    pub role: String,
    pub created_by: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl TokenView {
    /// `scope_label` is the scope with the instance's name, not its id.
    pub fn new(t: &ApiToken, scope_label: String) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            scope: scope_label,
            role: t.role.clone(),
            created_by: t.created_by.clone(),
            created_at: time(t.created_at),
            revoked_at: t.revoked_at.map(time),
        }
    }
}

/// A new token: the only response that carries its secret.
#[derive(Serialize, ToSchema)]
pub struct NewTokenView {
    #[serde(flatten)]
    pub token_info: TokenView,
    /// The bearer token; shown this once.
    pub token: String,
}

/// A web console user: never its password or its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub name: String,
    /// `admin` or `instance:NAME`.
    pub scope: String,
    /// `read` or `write`.
    pub role: String,
    pub created_by: String,
    pub created_at: String,
    /// Set while sign-ins as this user are refused from some client address
    /// after too many failures there (other addresses are not refused).
    pub locked_until: Option<String>,
}

impl UserView {
    pub fn new(u: &crate::store::UiUser, scope_label: String) -> Self {
        Self {
            id: u.id.clone(),
            name: u.name.clone(),
            scope: scope_label,
            role: u.role.clone(),
            created_by: u.created_by.clone(),
            created_at: time(u.created_at),
            locked_until: (u.locked_until > crate::util::now()).then(|| time(u.locked_until)),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateView {
    pub id: String,
    /// Lowercase hex.
    pub serial: String,
    #[schema(value_type = Vec<Object>)]
    pub identifiers: Vec<Identifier>,
    pub not_before: String,
    pub not_after: String,
    /// Whole days until `not_after` (negative once expired).
    pub days_remaining: i64,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    /// `local`, or the CA account that issued it.
    pub issuer: String,
    pub account: String,
    pub order: String,
    pub revoked_at: Option<String>,
    pub revocation_reason: Option<i64>,
    /// The PEM chain (single-certificate responses only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_pem: Option<String>,
}

/// The inventory status of a certificate at `now`.
pub fn certificate_status(c: &Certificate, now: i64) -> &'static str {
    match c.status {
        CertificateStatus::Revoked => "revoked",
        CertificateStatus::Signing => "issuing",
        CertificateStatus::Failed => "failed",
        CertificateStatus::Valid if c.not_after <= now => "expired",
        CertificateStatus::Valid => "active",
    }
}

impl CertificateView {
    pub fn new(c: &Certificate, now: i64, with_chain: bool) -> Self {
        Self {
            id: c.id.clone(),
            serial: c.serial.clone(),
            identifiers: c.identifiers.clone(),
            not_before: time(c.not_before),
            not_after: time(c.not_after),
            days_remaining: (c.not_after - now).div_euclid(86400),
            status: certificate_status(c, now).to_string(),
            issuer: c.issuer.to_string(),
            account: c.account_id.clone(),
            order: c.order_id.clone(),
            revoked_at: c.revoked_at.map(time),
            revocation_reason: c.revocation_reason,
            chain_pem: if with_chain {
                c.chain_pem.clone()
            } else {
                None
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeView {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub validated: Option<String>,
    /// The problem document of a failed validation.
    pub error: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizationView {
    pub id: String,
    #[schema(value_type = Object)]
    pub identifier: Identifier,
    pub wildcard: bool,
    pub status: String,
    pub expires: String,
    pub challenges: Vec<ChallengeView>,
}

fn problem(text: &Option<String>) -> Option<Value> {
    text.as_deref().and_then(|t| serde_json::from_str(t).ok())
}

impl AuthorizationView {
    pub fn new(a: &Authorization, now: i64) -> Self {
        Self {
            id: a.id.clone(),
            identifier: a.identifier.clone(),
            wildcard: a.wildcard,
            status: effective_authz_status(a.status, a.expires_at, now)
                .as_str()
                .to_string(),
            expires: time(a.expires_at),
            challenges: a
                .challenges
                .iter()
                .map(|c| ChallengeView {
                    kind: c.kind.as_str().to_string(),
                    status: c.status.as_str().to_string(),
                    validated: c.validated_at.map(time),
                    error: problem(&c.error),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    pub id: String,
    pub status: String,
    pub account: String,
    #[schema(value_type = Vec<Object>)]
    pub identifiers: Vec<Identifier>,
    pub created_at: String,
    pub updated_at: String,
    pub expires: String,
    pub certificate: Option<String>,
    /// The problem document of a failed order.
    pub error: Option<Value>,
    pub authorizations: Vec<AuthorizationView>,
    /// For relayed orders: the CA account, upstream state, failed attempts.
    pub upstream: Option<Value>,
}

impl OrderView {
    pub fn new(o: &Order, authorizations: &[Authorization], now: i64) -> Self {
        Self {
            id: o.id.clone(),
            status: effective_order_status(o, now).as_str().to_string(),
            account: o.account_id.clone(),
            identifiers: o.identifiers.clone(),
            created_at: time(o.created_at),
            updated_at: time(o.updated_at),
            expires: time(o.expires_at),
            certificate: o.certificate_id.clone(),
            error: problem(&o.error),
            authorizations: authorizations
                .iter()
                .map(|a| AuthorizationView::new(a, now))
                .collect(),
            upstream: None,
        }
    }
}

/// `OrderView::upstream`: how a relayed order stands at the upstream CA;
/// `ca_account` is the CA account's name, not its id.
pub fn upstream_view(u: &UpstreamOrder, ca_account: Option<String>) -> Value {
    serde_json::json!({
        "ca_account": ca_account,
        "state": u.state.as_str(),
        "order_url": u.upstream_url,
        "attempts": serde_json::from_str::<Value>(&u.attempts).unwrap_or_default(),
        "error": u.error,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// Increasing; pass the last one as `before` for the next (older) page.
    pub seq: i64,
    pub at: String,
    /// The instance's name (null for hub-wide events).
    pub instance: Option<String>,
    /// `token:NAME`, `acme-account:ID`, `certificate-key` or `hub`.
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub detail: Value,
}

impl EventView {
    pub fn new(e: &Event, instance: Option<String>) -> Self {
        Self {
            seq: e.seq,
            at: time(e.at),
            instance,
            actor: e.actor.clone(),
            action: e.action.clone(),
            object_type: e.object_type.clone(),
            object_id: e.object_id.clone(),
            detail: serde_json::from_str(&e.detail).unwrap_or(Value::Null),
        }
    }
}

/// A page of events; `next_before` is set when older events follow.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventListing {
    pub items: Vec<EventView>,
    pub next_before: Option<i64>,
}

/// A stored credential: never its secret, only a fingerprint.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub description: String,
    /// The non-secret fields.
    pub config: Value,
    /// A keyed fingerprint of the secret: changes when the secret is rotated.
    pub fingerprint: String,
    /// Zone bindings that use it.
    pub used_by: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    pub last_used_at: Option<String>,
}

impl CredentialView {
    pub fn new(c: &crate::store::Credential, used_by: Vec<String>) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            kind: c.kind.clone(),
            description: c.description.clone(),
            config: c.config.clone(),
            fingerprint: c.fingerprint.clone(),
            used_by,
            created_at: time(c.created_at),
            updated_at: time(c.updated_at),
            last_used_at: c.last_used_at.map(time),
        }
    }
}

/// A credential kind and its fields.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KindView {
    pub name: &'static str,
    pub title: &'static str,
    pub dns_provider: bool,
    pub config: Vec<crate::dns::providers::FieldSpec>,
    pub secret: Vec<crate::dns::providers::FieldSpec>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ZoneView {
    pub id: String,
    pub zone: String,
    /// The credential's name.
    pub credential: String,
    pub provider: String,
    pub created_at: String,
}

impl ZoneView {
    /// `credential` is the credential's name, not its id.
    pub fn new(z: &DnsZone, credential: String) -> Self {
        Self {
            id: z.id.clone(),
            zone: z.zone.clone(),
            credential,
            provider: z.provider.clone(),
            created_at: time(z.created_at),
        }
    }
}

/// One step of a zone test.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestStep {
    pub step: String,
    pub ok: bool,
    pub detail: String,
    pub ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ZoneTestView {
    pub ok: bool,
    pub zone: String,
    pub steps: Vec<TestStep>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DelegationView {
    pub id: String,
    pub domain: String,
    /// The record the customer creates...
    pub cname_name: String,
    /// ...pointing here.
    pub cname_target: String,
    /// `missing`, `mismatch` or `ok`.
    pub status: String,
    pub detail: String,
    pub checked_at: Option<String>,
    pub created_at: String,
}

impl DelegationView {
    pub fn new(hub: &Hub, d: &crate::store::Delegation) -> Self {
        Self {
            id: d.id.clone(),
            domain: d.domain.clone(),
            cname_name: crate::dns::delegations::cname_name(d),
            cname_target: crate::dns::delegations::cname_target(hub, d).unwrap_or_default(),
            status: d.status.as_str().to_string(),
            detail: d.detail.clone(),
            checked_at: d.checked_at.map(time),
            created_at: time(d.created_at),
        }
    }
}

/// A CA account: never its keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaAccountView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub ca: String,
    pub directory_url: String,
    pub environment: String,
    pub email: String,
    pub eab_kid: Option<String>,
    /// Whether an EAB HMAC key is stored (it is never shown).
    pub eab_hmac_key_set: bool,
    pub allow_wildcard: bool,
    pub dns_ttl: i64,
    pub api_timeout_s: i64,
    pub priority: i64,
    pub preferred: bool,
    pub trusted_roots_pem: Option<String>,
    pub caa_identities: Vec<String>,
    /// The profiles the CA's directory offered at the last test, name to description.
    pub profiles: std::collections::BTreeMap<String, String>,
    pub account_url: Option<String>,
    /// `unregistered`, `valid` or `error`.
    pub account_status: String,
    pub status_detail: String,
    pub created_at: String,
    pub updated_at: String,
}

impl CaAccountView {
    pub fn new(a: &crate::store::CaAccount) -> Self {
        Self {
            id: a.id.clone(),
            name: a.name.clone(),
            description: a.description.clone(),
            ca: a.ca.clone(),
            directory_url: a.directory_url.clone(),
            environment: a.environment.as_str().to_string(),
            email: a.email.clone(),
            eab_kid: a.eab_kid.clone(),
            eab_hmac_key_set: a.sealed_eab_hmac.is_some(),
            allow_wildcard: a.allow_wildcard,
            dns_ttl: a.dns_ttl,
            api_timeout_s: a.api_timeout_s,
            priority: a.priority,
            preferred: a.preferred,
            trusted_roots_pem: a.trusted_roots_pem.clone(),
            caa_identities: a.caa_identities.clone(),
            profiles: a.profiles.clone(),
            account_url: a.account_url.clone(),
            account_status: a.status.as_str().to_string(),
            status_detail: a.status_detail.clone(),
            created_at: time(a.created_at),
            updated_at: time(a.updated_at),
        }
    }
}

/// "Save and Test".
#[derive(Debug, Serialize, ToSchema)]
pub struct CaTestView {
    pub available: bool,
    /// `API is available`, or what failed (TLS, timeout, HTTP status, EAB refused).
    pub detail: String,
    /// The directory's endpoints.
    pub endpoints: Value,
    pub account_status: String,
    pub latency_ms: Option<u64>,
}

/// A certificate the hub manages itself. Never carries the key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ManagedView {
    pub id: String,
    pub name: String,
    /// DNS names.
    pub identifiers: Vec<String>,
    pub key_type: String,
    pub profile: Option<String>,
    pub auto_renew: bool,
    pub renew_before_days: Option<i64>,
    pub keep_key: bool,
    pub tags: Vec<String>,
    /// `draft`, `csr`, `pending`, `active`, `expired`, `revoked` or `failed`.
    pub status: String,
    /// What it is doing or waiting on.
    pub step: String,
    /// Per name, what DNS still lacks (e.g. the delegation CNAME to create).
    #[schema(value_type = Vec<Object>)]
    pub missing: Vec<Value>,
    /// The certificate served now.
    pub certificate: Option<CertificateView>,
    pub next_renewal_at: Option<String>,
    pub next_attempt_at: String,
    /// Failed attempts in a row.
    pub failures: i64,
    /// The last failure's cause.
    pub error: Option<String>,
    /// Attempts and their outcomes, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<Value>,
    pub created_at: String,
    pub updated_at: String,
}

impl ManagedView {
    pub fn new(
        m: &crate::store::ManagedCertificate,
        current: Option<&Certificate>,
        now: i64,
    ) -> Self {
        Self {
            id: m.id.clone(),
            name: m.name.clone(),
            identifiers: m.identifiers.iter().map(|i| i.value.clone()).collect(),
            key_type: m.key_type.as_str().to_string(),
            profile: m.profile.clone(),
            auto_renew: m.auto_renew,
            renew_before_days: m.renew_before_days,
            keep_key: m.keep_key,
            tags: m.tags.clone(),
            status: m.status.as_str().to_string(),
            step: m.step.clone(),
            missing: m.missing.clone(),
            certificate: current.map(|c| CertificateView::new(c, now, false)),
            next_renewal_at: m.next_renewal_at.map(rfc3339),
            next_attempt_at: rfc3339(m.next_attempt_at),
            failures: m.failures,
            error: m.error.clone(),
            history: m.history.clone(),
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
        }
    }
}

/// A notification channel. Never carries its secret or password.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub id: String,
    pub name: String,
    /// `webhook` or `email`.
    pub kind: String,
    /// Non-secret settings.
    #[schema(value_type = Object)]
    pub config: Value,
    /// Events sent here; empty means all.
    pub events: Vec<String>,
    pub enabled: bool,
    /// Whether a secret (webhook key, SMTP password) is stored.
    pub has_secret: bool,
    /// The webhook key the hub generated: shown in the create answer only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: String,
}

impl ChannelView {
    pub fn new(c: &crate::store::NotificationChannel, secret: Option<String>) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            kind: c.kind.as_str().to_string(),
            config: match c.config.get("url").and_then(Value::as_str) {
                // The path and query may hold a token: shown to no one.
                Some(url) => serde_json::json!({"url": crate::notify::shown_url(url)}),
                None => c.config.clone(),
            },
            events: c.events.clone(),
            enabled: c.enabled,
            has_secret: c.sealed_secret.is_some(),
            secret,
            created_at: rfc3339(c.created_at),
        }
    }
}

/// A queued or delivered notification.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotificationView {
    pub id: String,
    pub channel: String,
    pub event: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub last_error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
}

impl NotificationView {
    pub fn new(n: &crate::store::Notification) -> Self {
        Self {
            id: n.id.clone(),
            channel: n.channel_id.clone(),
            event: n.event.clone(),
            status: n.status.as_str().to_string(),
            attempts: n.attempts,
            next_attempt_at: rfc3339(n.next_attempt_at),
            last_error: n.last_error.clone(),
            created_at: rfc3339(n.created_at),
            sent_at: n.sent_at.map(rfc3339),
        }
    }
}
