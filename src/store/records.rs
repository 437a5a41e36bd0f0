//! The rows the store reads and writes, as typed values.

use crate::policy::{ChallengeType, Identifier, RateLimits, ValidationMode};

/// An enum stored as text: every value has one text, the same in the
/// database and on every wire that shows it, so changing a text is a
/// migration and a change of the API, never a rename.
macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every value, in the order declared.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// Its text, as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// The value whose text is `text`, if any (for input, which
            /// each caller refuses in its own words).
            pub fn from_text(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }

            /// A stored value; `Corrupt` when the text is none of them.
            pub fn parse(text: &str) -> Result<Self, super::StoreError> {
                Self::from_text(text).ok_or_else(|| super::StoreError::Corrupt(format!(
                    concat!("unknown ", stringify!($name), " {:?}"), text)))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_enum!(
    /// RFC 8555 §7.1.6 account states.
    AccountStatus { Valid => "valid", Deactivated => "deactivated", Revoked => "revoked" }
);
status_enum!(
    /// RFC 8555 §7.1.6 order states.
    OrderStatus { Pending => "pending", Ready => "ready", Processing => "processing", Valid => "valid", Invalid => "invalid" }
);
status_enum!(
    /// RFC 8555 §7.1.6 authorization states.
    AuthzStatus { Pending => "pending", Valid => "valid", Invalid => "invalid", Deactivated => "deactivated", Expired => "expired", Revoked => "revoked" }
);
status_enum!(
    /// RFC 8555 §7.1.6 challenge states.
    ChallengeStatus { Pending => "pending", Processing => "processing", Valid => "valid", Invalid => "invalid" }
);
status_enum!(
    /// Certificate lifecycle as recorded: `signing` is the intent written before
    /// the signature exists; `failed` is an intent the CA refused or could not
    /// sign (its order is invalid, its serial never used); `expired` is
    /// derived from `not_after` when read.
    CertificateStatus { Signing => "signing", Valid => "valid", Revoked => "revoked", Failed => "failed" }
);

status_enum!(
    /// An access key's state: only `active` keys bind new accounts and let
    /// their accounts order; `revoked` is final.
    AccessKeyStatus { Active => "active", Disabled => "disabled", Revoked => "revoked" }
);

status_enum!(
    /// Where an instance's certificates come from.
    Issuer {
        /// The hub's own CA signs them.
        Local => "local",
        /// Orders are relayed to the instance's CA accounts (the relay).
        Upstream => "upstream",
    }
);
status_enum!(
    /// Which CAs may serve an instance: a staging CA account never serves
    /// a production instance, nor the reverse.
    Environment { Production => "production", Staging => "staging" }
);
status_enum!(
    /// A delegation's CNAME as last seen on the customer zone's
    /// authoritative servers.
    DelegationStatus {
        /// Absent on some server, or it could not be looked up.
        Missing => "missing",
        /// Some server has it pointing elsewhere.
        Mismatch => "mismatch",
        /// Every server has it, pointing at the delegation's label.
        Ok => "ok",
    }
);
status_enum!(
    /// Whether a CA account is registered at its CA.
    CaAccountStatus {
        /// Not yet, or its directory or binding changed since: a test registers it.
        Unregistered => "unregistered",
        Valid => "valid",
        /// Registering failed; failover passes it over.
        Error => "error",
    }
);
status_enum!(
    /// How far a relayed order got at its upstream CA.
    UpstreamOrderState {
        /// No upstream order yet.
        New => "new",
        Authorizing => "authorizing",
        /// Authorized upstream, waiting for the client's CSR.
        Ready => "ready",
        /// The CSR went upstream.
        Finalizing => "finalizing",
        Valid => "valid",
        Failed => "failed",
    }
);
status_enum!(
    /// Where a managed certificate stands: `draft` → `csr` → `pending`
    /// (waiting for DNS) → `active` → `expired` / `revoked`; `failed` while
    /// it has never been issued and its last attempt failed.
    ManagedStatus {
        Draft => "draft",
        Csr => "csr",
        Pending => "pending",
        Active => "active",
        Expired => "expired",
        Revoked => "revoked",
        Failed => "failed",
    }
);
status_enum!(
    /// The key a managed certificate is made with: ECDSA on P-256 or
    /// P-384, or RSA of 2048, 3072 or 4096 bits.
    KeyType {
        EcP256 => "ec-p256",
        EcP384 => "ec-p384",
        Rsa2048 => "rsa-2048",
        Rsa3072 => "rsa-3072",
        Rsa4096 => "rsa-4096",
    }
);
status_enum!(
    /// How a notification channel delivers.
    ChannelKind {
        /// An HTTP POST signed with HMAC-SHA256.
        Webhook => "webhook",
        /// SMTP with STARTTLS.
        Email => "email",
    }
);
status_enum!(
    /// A notification in the outbox.
    NotificationStatus {
        /// Due (again) at its `next_attempt_at`.
        Pending => "pending",
        Sent => "sent",
        /// Given up on: too many attempts, or its channel is gone.
        Failed => "failed",
    }
);

/// Who signed a certificate, as recorded with it (and in the admin API):
/// `local`, or `ca-account:NAME` for a certificate relayed through the CA
/// account of that name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CertificateIssuer {
    /// The hub's own CA; its CRL lists these.
    Local,
    /// An upstream CA, through the instance's CA account of this name.
    CaAccount(String),
}

impl CertificateIssuer {
    const LOCAL: &str = "local";
    const CA_ACCOUNT: &str = "ca-account:";

    /// A stored value; `Corrupt` when it is neither form.
    pub fn parse(text: &str) -> Result<Self, super::StoreError> {
        if text == Self::LOCAL {
            return Ok(Self::Local);
        }
        text.strip_prefix(Self::CA_ACCOUNT)
            .map(|name| Self::CaAccount(name.to_string()))
            .ok_or_else(|| {
                super::StoreError::Corrupt(format!("unknown CertificateIssuer {text:?}"))
            })
    }
}

impl std::fmt::Display for CertificateIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str(Self::LOCAL),
            Self::CaAccount(name) => write!(f, "{}{name}", Self::CA_ACCOUNT),
        }
    }
}

/// A tenant of the hub.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub description: String,
    pub issuer: Issuer,
    /// newAccount must carry an External Account Binding (RFC 8555 §7.3.4).
    pub external_account_required: bool,
    /// Validity of issued certificates; `None` = the hub's `[ca]` default.
    pub cert_validity_days: Option<i64>,
    /// Challenge types offered (stored as a JSON array of their names).
    pub allowed_challenges: Vec<ChallengeType>,
    pub rate_limits: RateLimits,
    /// Which CA accounts may serve it.
    pub environment: Environment,
    /// Move an order to the next CA account when one fails.
    pub failover: bool,
    /// Validation (and notifications set by instance-scoped tokens) may
    /// reach private and loopback addresses; `None` = the hub's
    /// `[validation] allow_private_targets`.
    pub allow_private_targets: Option<bool>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An EAB key pair with its policy (DESIGN: *access key*). Its `Debug`
/// leaves the HMAC key out.
#[derive(Clone)]
pub struct AccessKey {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    pub description: String,
    /// The EAB key identifier clients send.
    pub kid: String,
    /// The HMAC key, sealed by `secrets` (owner `access-key`).
    pub hmac_key: Vec<u8>,
    /// Pattern texts as given (normalized on use by `policy::Pattern`).
    pub allowed_identifiers: Vec<String>,
    pub allow_wildcard: bool,
    pub validation: ValidationMode,
    pub expires_at: Option<i64>,
    pub status: AccessKeyStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("instance_id", &self.instance_id)
            .field("name", &self.name)
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .field("allowed_identifiers", &self.allowed_identifiers)
            .field("validation", &self.validation)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// An admin API token; only the SHA-256 of the secret is stored.
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    /// `admin` or `instance:NAME`.
    pub scope: String,
    /// `read` or `write`.
    pub role: String,
    pub created_by: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A web console session. The cookie holds a secret; only its SHA-256 is
/// stored, with who signed in.
#[derive(Debug, Clone)]
pub struct UiSession {
    pub id_hash: String,
    /// `token:<SHA-256 of the token>` or `user:<id>`.
    pub subject: String,
    /// The session's form token (CSRF).
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A web console user: a name and an argon2id password, with the scope and
/// role an API token would have.
#[derive(Debug, Clone)]
pub struct UiUser {
    pub id: String,
    pub name: String,
    /// PHC string; never leaves the store and the sign-in check.
    pub password_hash: String,
    /// `admin` or `instance:ID`.
    pub scope: String,
    /// `read` or `write`.
    pub role: String,
    pub created_by: String,
    pub created_at: i64,
    /// No longer counted: failures count per client address, in memory
    /// (`policy::SignInFailures`); the column stays for existing databases.
    pub failed_logins: i64,
    /// Sign-ins as this user are refused from some client address until
    /// then (0: never); shown to admins, not consulted at sign-in.
    pub locked_until: i64,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub seq: i64,
    pub at: i64,
    pub instance_id: Option<String>,
    /// `token:NAME`, `acme-account:ID`, or `hub`.
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    /// JSON object text; never a secret.
    pub detail: String,
}

/// A downstream ACME account (RFC 8555 §7.1.2).
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub instance_id: String,
    pub key_thumbprint: String,
    /// The canonical public JWK, as JSON text.
    pub jwk: String,
    pub status: AccountStatus,
    pub contact: Vec<String>,
    pub tos_agreed: bool,
    /// The access key the account was registered with (EAB), if any.
    pub access_key_id: Option<String>,
    pub created_at: i64,
}

/// An order (RFC 8555 §7.1.3). The error is an RFC 7807 problem as JSON text.
#[derive(Debug, Clone)]
pub struct Order {
    pub id: String,
    pub instance_id: String,
    pub account_id: String,
    pub status: OrderStatus,
    pub identifiers: Vec<Identifier>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub expires_at: i64,
    pub error: Option<String>,
    pub certificate_id: Option<String>,
    pub replaces: Option<String>,
    /// The ACME profile the client asked for (draft-ietf-acme-profiles).
    pub profile: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Authorization ids, in the order of the identifiers.
    pub authz_ids: Vec<String>,
}

/// An authorization (RFC 8555 §7.1.4) with its challenges.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub id: String,
    pub instance_id: String,
    pub account_id: String,
    /// The identifier without a wildcard label; `wildcard` says if it had one.
    pub identifier: Identifier,
    pub wildcard: bool,
    pub status: AuthzStatus,
    pub expires_at: i64,
    pub challenges: Vec<Challenge>,
}

/// A challenge (RFC 8555 §7.1.5). The error is problem JSON text.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub id: String,
    pub authz_id: String,
    pub kind: ChallengeType,
    pub token: String,
    pub status: ChallengeStatus,
    pub validated_at: Option<i64>,
    pub error: Option<String>,
}

/// What a new order asks for: its authorizations are created (or reused) with it.
#[derive(Debug, Clone)]
pub struct NewOrder {
    /// Relayed to an upstream CA: its `upstream_orders` row is written in
    /// the same transaction as the order.
    pub relayed: bool,
    pub instance_id: String,
    pub account_id: String,
    pub identifiers: Vec<Identifier>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub expires_at: i64,
    pub replaces: Option<String>,
    pub profile: Option<String>,
    pub authorizations: Vec<NewAuthz>,
}

impl NewOrder {
    /// How many of its authorizations are still to become valid (the
    /// order's `unready`): new ones not made valid by a policy; a reused one
    /// is valid already. None: the order starts `ready`.
    pub(super) fn unready(&self) -> i64 {
        self.authorizations
            .iter()
            .filter(|authz| matches!(authz, NewAuthz::Create { valid: false, .. }))
            .count() as i64
    }
}

/// One authorization of a new order: either an existing valid one to reuse, or
/// a new pending one with its challenges.
#[derive(Debug, Clone)]
pub enum NewAuthz {
    Reuse(String),
    Create {
        identifier: Identifier,
        wildcard: bool,
        expires_at: i64,
        /// `(kind, token)` pairs.
        challenges: Vec<(ChallengeType, String)>,
        /// Created valid (a pre-authorizing policy); no challenge to answer.
        valid: bool,
    },
}

/// An issued (or being-issued) certificate.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub id: String,
    pub instance_id: String,
    pub account_id: String,
    pub order_id: String,
    /// Lowercase hex of the serial's DER content bytes.
    pub serial: String,
    pub status: CertificateStatus,
    pub issuer: CertificateIssuer,
    pub identifiers: Vec<Identifier>,
    pub spki: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    pub der: Option<Vec<u8>>,
    pub chain_pem: Option<String>,
    /// Alternate chains from an upstream CA (relayed certificates only).
    pub alternate_chains: Vec<String>,
    pub ari_id: Option<String>,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<i64>,
}

/// A challenge `processing` for longer than a validation takes.
#[derive(Debug, Clone)]
pub struct StaleChallenge {
    pub challenge_id: String,
    pub instance_id: String,
    /// Its `updated_at`: the claim is guarded on it.
    pub since: i64,
}

/// The intent recorded before signing (DESIGN: persist intent before side effects).
#[derive(Debug, Clone)]
pub struct CertificateIntent {
    pub instance_id: String,
    pub account_id: String,
    pub order_id: String,
    pub serial: String,
    pub issuer: CertificateIssuer,
    pub identifiers: Vec<Identifier>,
    pub spki: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
}

/// A revoked certificate as the CRL lists it.
#[derive(Debug, Clone)]
pub struct RevokedCertificate {
    pub serial: String,
    pub revoked_at: i64,
    pub reason: i64,
}

/// A stored credential (DESIGN: *stored credential*). The secret is sealed
/// by `secrets` (owner `credential`); its `Debug` leaves it out.
#[derive(Clone)]
pub struct Credential {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    /// A provider kind from `dns::providers`, or `generic`.
    pub kind: String,
    pub description: String,
    /// Non-secret settings, a JSON object.
    pub config: serde_json::Value,
    pub sealed_secret: Vec<u8>,
    pub fingerprint: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_used_at: Option<i64>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("id", &self.id)
            .field("instance_id", &self.instance_id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Which credential answers DNS-01 for a zone of an instance.
#[derive(Debug, Clone)]
pub struct DnsZone {
    pub id: String,
    pub instance_id: String,
    /// Lowercase, no trailing dot.
    pub zone: String,
    pub credential_id: String,
    pub provider: String,
    pub created_at: i64,
}

/// `_acme-challenge.<domain> CNAME <label>.<technical zone>`.
#[derive(Debug, Clone)]
pub struct Delegation {
    pub id: String,
    pub instance_id: String,
    pub domain: String,
    pub label: String,
    pub status: DelegationStatus,
    pub detail: String,
    pub checked_at: Option<i64>,
    pub created_at: i64,
}

/// An acme-dns registration: `X-Api-User` and the hash of `X-Api-Key`.
#[derive(Debug, Clone)]
pub struct AcmeDnsAccount {
    pub username: String,
    pub instance_id: String,
    pub key_hash: String,
    pub label: String,
    /// Networks (CIDR) updates may come from; empty: anywhere.
    pub allowfrom: Vec<String>,
    pub created_at: i64,
}

/// An account at an upstream CA, owned by one instance (DESIGN: *CA account*).
/// Its ACME account key (in `credentials`) and EAB HMAC key are sealed by
/// `secrets` (owner `ca-account`); its `Debug` leaves both out.
#[derive(Clone)]
pub struct CaAccount {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    pub description: String,
    /// A known CA (`letsencrypt`, `zerossl`, ...) or `custom`.
    pub ca: String,
    pub directory_url: String,
    pub environment: Environment,
    pub email: String,
    pub eab_kid: Option<String>,
    pub sealed_eab_hmac: Option<Vec<u8>>,
    pub allow_wildcard: bool,
    pub dns_ttl: i64,
    pub api_timeout_s: i64,
    pub priority: i64,
    pub preferred: bool,
    pub trusted_roots_pem: Option<String>,
    pub caa_identities: Vec<String>,
    /// The profiles the CA's directory offers, name to description.
    pub profiles: std::collections::BTreeMap<String, String>,
    /// The upstream account URL once registered.
    pub account_url: Option<String>,
    /// instant-acme's account credentials (JSON), sealed.
    pub sealed_credentials: Option<Vec<u8>>,
    pub status: CaAccountStatus,
    pub status_detail: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for CaAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaAccount")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("ca", &self.ca)
            .field("directory_url", &self.directory_url)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A downstream order relayed upstream.
#[derive(Debug, Clone)]
pub struct UpstreamOrder {
    pub order_id: String,
    pub instance_id: String,
    pub ca_account_id: Option<String>,
    pub upstream_url: Option<String>,
    pub state: UpstreamOrderState,
    pub csr: Option<Vec<u8>>,
    /// JSON array of `{"account", "error"}` for accounts that failed.
    pub attempts: String,
    pub error: Option<String>,
    /// The worker that holds (or last held) the lease; its writes are
    /// guarded on it.
    pub lease_owner: Option<String>,
}

/// A certificate an upstream CA issued for a relayed order.
#[derive(Debug, Clone)]
pub struct RelayedCertificate {
    pub order_id: String,
    pub instance_id: String,
    pub account_id: String,
    pub serial: String,
    pub issuer: CertificateIssuer,
    pub identifiers: Vec<Identifier>,
    pub spki: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    pub der: Vec<u8>,
    pub chain_pem: String,
    /// The upstream CA's alternate chains (RFC 8555 §7.4.2), PEM each.
    pub alternate_chains: Vec<String>,
    /// RFC 9773 certificate identifier, so downstream ARI answers for it.
    pub ari_id: Option<String>,
}

/// A certificate the hub manages itself: it holds the key, issues through
/// the instance's issuer and renews on its own.
#[derive(Debug, Clone)]
pub struct ManagedCertificate {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    pub identifiers: Vec<Identifier>,
    pub key_type: KeyType,
    pub profile: Option<String>,
    pub auto_renew: bool,
    pub renew_before_days: Option<i64>,
    /// Keep the key across renewals (a new key each time otherwise).
    pub keep_key: bool,
    pub tags: Vec<String>,
    pub status: ManagedStatus,
    /// What the job is doing or waiting on, in words.
    pub step: String,
    /// Per identifier, what DNS still lacks (`{"identifier", "detail", ...}`).
    pub missing: Vec<serde_json::Value>,
    /// The private key (PKCS#8 DER), sealed.
    pub sealed_key: Option<Vec<u8>>,
    pub csr: Option<Vec<u8>>,
    /// The order in flight, if any.
    pub order_id: Option<String>,
    /// The certificate served now.
    pub certificate_id: Option<String>,
    pub next_renewal_at: Option<i64>,
    pub next_attempt_at: i64,
    /// Failed attempts in a row.
    pub failures: i64,
    pub error: Option<String>,
    /// Attempts and their outcomes, oldest first.
    pub history: Vec<serde_json::Value>,
    /// The expiry reminder (days before expiry) last sent for the current certificate.
    pub expiry_notified: Option<i64>,
    /// An operator asked for a renewal now.
    pub renew_requested: bool,
    /// A renewal's new key (sealed) and CSR, until its certificate is
    /// issued; the key served stays the current certificate's meanwhile.
    pub next_sealed_key: Option<Vec<u8>>,
    pub next_csr: Option<Vec<u8>>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where an instance's notifications go.
#[derive(Debug, Clone)]
pub struct NotificationChannel {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    pub kind: ChannelKind,
    /// Non-secret settings (webhook `url`; email `host`, `port`, `from`, `to`, ...).
    pub config: serde_json::Value,
    /// The webhook's HMAC key or the SMTP password, sealed.
    pub sealed_secret: Option<Vec<u8>>,
    /// Events sent here; empty means all.
    pub events: Vec<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One notification to deliver to one channel.
#[derive(Debug, Clone)]
pub struct Notification {
    pub id: String,
    pub channel_id: String,
    pub instance_id: String,
    pub event: String,
    /// The JSON body.
    pub payload: String,
    pub status: NotificationStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

/// What [`Store::add_zone_record`](super::Store::add_zone_record) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneRecordWrite {
    /// The value is served (new, or its expiry moved).
    Added,
    /// The name holds its most values already; nothing was written.
    Full {
        /// When the first of them expires (unix seconds).
        oldest_expires_at: Option<i64>,
    },
}
