//! Certificates the hub manages itself, for consumers that do not speak
//! ACME: the hub makes the key (sealed at rest like a credential) and the
//! CSR, proves control of the names through the instance's zone bindings
//! and delegations, issues through the instance's issuer exactly like a
//! downstream order (so the result is in the same inventory), and renews
//! inside the renewal window. Status: `draft` → `csr` → `pending` (waiting
//! for DNS) → `active` → `expired` / `revoked`; `failed` with the cause,
//! retried with backoff. A leased background job does every step; each
//! step is recorded before the next, so a restart resumes.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit::{self, Actor};
use crate::dns::publish::{Solver, challenge_name, solver_for};
use crate::error::{Error, ErrorKind};
use crate::hub::Hub;
use crate::policy::Identifier;
use crate::store::{
    Account, Certificate, CertificateStatus, DelegationStatus, Instance, Issuer, KeyType,
    ManagedCertificate, ManagedStatus, NewAuthz, NewOrder, OrderStatus,
};
use crate::util::{b64, random_bytes, random_id};

/// Most names on one managed certificate.
const MAX_IDENTIFIERS: usize = 100;
/// How long a worker holds a managed certificate's job.
const LEASE_SECS: i64 = 600;
/// Waiting for DNS (a CNAME to be created) is looked at again this often.
const DNS_RECHECK_SECS: i64 = 10;
/// An order at the CA is looked at again this often.
const ORDER_POLL_SECS: i64 = 2;
/// The renewal window (ARI) of an active certificate is asked again this often.
const WINDOW_RECHECK_SECS: i64 = 6 * 3600;
/// Backoff after failures: doubling from a minute, capped at an hour.
const BACKOFF_START_SECS: i64 = 60;
const BACKOFF_CAP_SECS: i64 = 3600;
/// History entries kept per certificate.
const MAX_HISTORY: usize = 50;
/// `certificate.renewal_failing` is sent after this many failures in a row.
const FAILING_AFTER: i64 = 3;
/// Expiry reminders, in days before expiry, while no renewal succeeded.
const EXPIRY_REMINDERS: &[i64] = &[30, 14, 7, 1];

/// A managed certificate as sent to the API; on update only `auto_renew`,
/// `renew_before_days`, `keep_key` and `tags` change.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManagedSettings {
    pub name: Option<String>,
    /// DNS names (wildcards allowed); every one must be covered by a zone
    /// binding or a delegation of the instance.
    pub identifiers: Option<Vec<String>>,
    /// `ec-p256` (default), `ec-p384`, `rsa-2048`, `rsa-3072` or `rsa-4096`.
    pub key_type: Option<String>,
    /// An ACME profile the instance offers.
    pub profile: Option<String>,
    /// Renew on its own (default true).
    pub auto_renew: Option<bool>,
    /// Renew this many days before expiry when the issuer offers no
    /// renewal window (ARI); default a third of the lifetime.
    pub renew_before_days: Option<i64>,
    /// Keep the key across renewals (default: a new key each time).
    pub keep_key: Option<bool>,
    pub tags: Option<Vec<String>>,
}

/// Checks the settings that may change after creation.
fn apply(m: &mut ManagedCertificate, s: &ManagedSettings) -> Result<(), Error> {
    if let Some(auto) = s.auto_renew {
        m.auto_renew = auto;
    }
    if let Some(days) = s.renew_before_days {
        if !(1..=365).contains(&days) {
            return Err(Error::invalid(
                "renew_before_days",
                "renew_before_days must be 1 to 365",
            ));
        }
        m.renew_before_days = Some(days);
    }
    if let Some(keep) = s.keep_key {
        m.keep_key = keep;
    }
    if let Some(tags) = &s.tags {
        if tags.len() > 20 || tags.iter().any(|t| t.is_empty() || t.len() > 64) {
            return Err(Error::invalid(
                "tags",
                "tags: at most 20, each 1 to 64 characters",
            ));
        }
        m.tags = tags.clone();
    }
    Ok(())
}

fn parse_names(names: &[String]) -> Result<Vec<Identifier>, Error> {
    if names.is_empty() || names.len() > MAX_IDENTIFIERS {
        return Err(Error::invalid(
            "identifiers",
            format!("identifiers must list 1 to {MAX_IDENTIFIERS} DNS names"),
        ));
    }
    let mut out: Vec<Identifier> = Vec::with_capacity(names.len());
    for name in names {
        if name.parse::<std::net::IpAddr>().is_ok() {
            return Err(Error::invalid(
                "identifiers",
                format!(
                    "{name}: managed certificates are proven through DNS, which cannot prove an IP address"
                ),
            ));
        }
        let id = Identifier::dns(name)
            .map_err(|e| Error::invalid("identifiers", format!("{name}: {}", e.detail)))?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out.sort_by(|a, b| a.value.cmp(&b.value));
    Ok(out)
}

pub async fn create_managed(
    hub: &Arc<Hub>,
    actor: &Actor,
    instance: &Instance,
    s: &ManagedSettings,
) -> Result<ManagedCertificate, Error> {
    let name = s
        .name
        .clone()
        .ok_or_else(|| Error::invalid("name", "name is required"))?;
    crate::tenancy::fields::check_name("managed certificate", &name)?;
    let identifiers = parse_names(
        s.identifiers
            .as_deref()
            .ok_or_else(|| Error::invalid("identifiers", "identifiers is required"))?,
    )?;
    let key_type = match s.key_type.as_deref() {
        None => KeyType::EcP256,
        Some(text) => KeyType::from_text(text).ok_or_else(|| {
            let all: Vec<&str> = KeyType::ALL.iter().map(|k| k.as_str()).collect();
            Error::invalid(
                "key_type",
                format!("key_type must be one of {}", all.join(", ")),
            )
        })?,
    };
    if let Some(profile) = &s.profile {
        crate::orders::check_profile(hub, instance, profile)
            .await
            .map_err(|e| Error::invalid("profile", e.detail))?;
    }
    let at = hub.now();
    let mut m = ManagedCertificate {
        id: random_id(),
        instance_id: instance.id.clone(),
        name,
        identifiers,
        key_type,
        profile: s.profile.clone(),
        auto_renew: true,
        renew_before_days: None,
        keep_key: false,
        tags: Vec::new(),
        status: ManagedStatus::Draft,
        step: "making the key and CSR".into(),
        missing: Vec::new(),
        sealed_key: None,
        csr: None,
        order_id: None,
        certificate_id: None,
        next_renewal_at: None,
        next_attempt_at: at,
        failures: 0,
        error: None,
        history: Vec::new(),
        expiry_notified: None,
        renew_requested: false,
        next_sealed_key: None,
        next_csr: None,
        created_at: at,
        updated_at: at,
    };
    apply(&mut m, s)?;
    hub.store.insert_managed(&m).await?;
    audit::record(
        hub,
        Some(&instance.id),
        actor,
        "managed.create",
        ("managed-certificate", &m.id),
        json!({"name": m.name, "identifiers": m.identifiers, "key_type": m.key_type.as_str()}),
    )
    .await;
    spawn(hub.clone(), m.id.clone());
    Ok(m)
}

pub async fn update_managed(
    hub: &Hub,
    actor: &Actor,
    m: &mut ManagedCertificate,
    s: &ManagedSettings,
) -> Result<(), Error> {
    if s.name.is_some() || s.identifiers.is_some() || s.key_type.is_some() || s.profile.is_some() {
        return Err(Error::invalid(
            "name",
            "name, identifiers, key_type and profile are fixed once created; create another managed certificate",
        ));
    }
    apply(m, s)?;
    hub.store.update_managed_settings(m).await?;
    audit::record(
        hub,
        Some(&m.instance_id),
        actor,
        "managed.update",
        ("managed-certificate", &m.id),
        json!({"auto_renew": m.auto_renew, "renew_before_days": m.renew_before_days, "keep_key": m.keep_key}),
    )
    .await;
    Ok(())
}

/// Renews now, whatever the window says (with a new key unless `keep_key`).
pub async fn renew_now(
    hub: &Arc<Hub>,
    actor: &Actor,
    m: &mut ManagedCertificate,
) -> Result<(), Error> {
    match hub.store.request_managed_renewal(&m.id).await {
        Ok(()) => {}
        Err(crate::store::StoreError::Guard) => {
            return Err(Error::new(
                ErrorKind::Conflict,
                "an issuance is already in flight for this certificate",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    m.renew_requested = true;
    audit::record(
        hub,
        Some(&m.instance_id),
        actor,
        "managed.renew",
        ("managed-certificate", &m.id),
        json!({"name": m.name}),
    )
    .await;
    spawn(hub.clone(), m.id.clone());
    Ok(())
}

pub async fn delete_managed(hub: &Hub, actor: &Actor, m: &ManagedCertificate) -> Result<(), Error> {
    hub.store.delete_managed(&m.id).await?;
    audit::record(
        hub,
        Some(&m.instance_id),
        actor,
        "managed.delete",
        ("managed-certificate", &m.id),
        json!({"name": m.name}),
    )
    .await;
    Ok(())
}

/// The private key, PKCS#8 PEM. Only for callers allowed to see it (the
/// handler checks the write role); every call is an audit event.
pub async fn private_key_pem(
    hub: &Hub,
    actor: &Actor,
    m: &ManagedCertificate,
    format: &str,
) -> Result<String, Error> {
    let der = open_key(hub, m)?;
    audit::record(
        hub,
        Some(&m.instance_id),
        actor,
        "managed.key_download",
        ("managed-certificate", &m.id),
        json!({"name": m.name, "format": format}),
    )
    .await;
    Ok(crate::util::pem("PRIVATE KEY", &der))
}

/// The shortest PKCS#12 password accepted.
const MIN_PASSWORD: usize = 8;

/// The key and `chain_pem` as PKCS#12 (PBES2 with AES-256 and an
/// HMAC-SHA256 MAC, which OpenSSL 3 and current platforms read), protected
/// by the caller's password. Every call is an audit event.
pub async fn pkcs12(
    hub: &Hub,
    actor: &Actor,
    m: &ManagedCertificate,
    chain_pem: &str,
    password: &str,
) -> Result<Vec<u8>, Error> {
    if password.chars().count() < MIN_PASSWORD || password.len() > 1024 {
        return Err(Error::invalid(
            "password",
            format!("the PKCS#12 password must be {MIN_PASSWORD} to 1024 characters"),
        ));
    }
    let key = open_key(hub, m)?;
    use rustls_pki_types::pem::PemObject;
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .map(|c| {
            let c = c.map_err(|e| Error::internal("reading a chain", e))?;
            p12_keystore::Certificate::from_der(c.as_ref())
                .map_err(|e| Error::internal("reading a chain", e))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let local_key_id = chain
        .first()
        .map(|c| ring::digest::digest(&ring::digest::SHA256, c.as_der()).as_ref()[..20].to_vec())
        .unwrap_or_default();
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        &m.name,
        p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
            key,
            local_key_id,
            chain,
        )),
    );
    let password = password.to_string();
    // Thousands of PBKDF2 rounds: off the async runtime.
    let der = tokio::task::spawn_blocking(move || store.writer(&password).write())
        .await
        .map_err(|e| Error::internal("writing PKCS#12", e))?
        .map_err(|e| Error::internal("writing PKCS#12", e))?;
    audit::record(
        hub,
        Some(&m.instance_id),
        actor,
        "managed.key_download",
        ("managed-certificate", &m.id),
        json!({"name": m.name, "format": "pkcs12"}),
    )
    .await;
    Ok(der)
}

fn owner(m: &ManagedCertificate) -> String {
    crate::secrets::owner("managed-key", &m.instance_id, &m.id)
}

fn open_key(hub: &Hub, m: &ManagedCertificate) -> Result<Vec<u8>, Error> {
    let sealed = m
        .sealed_key
        .as_ref()
        .ok_or_else(|| Error::not_found("the key is not made yet"))?;
    hub.secrets
        .open(sealed, &owner(m))
        .map_err(|e| Error::internal("opening a managed key", e))
}

// ---------------------------------------------------------------- the job

/// Runs the certificate's due step in the background.
pub fn spawn(hub: Arc<Hub>, id: String) {
    tokio::spawn(async move {
        if let Err(e) = run(&hub, &id).await {
            tracing::warn!(managed = %id, error = %e, "managed certificate job stopped with an error");
        }
    });
}

/// Every managed certificate whose next step is due (the housekeeping sweep).
pub async fn sweep(hub: &Arc<Hub>) -> Result<usize, Error> {
    let due = hub.store.due_managed(hub.now()).await?;
    let n = due.len();
    for id in due {
        spawn(hub.clone(), id);
    }
    Ok(n)
}

async fn run(hub: &Arc<Hub>, id: &str) -> Result<(), Error> {
    // Long enough for every name's propagation wait, one after another.
    let names = hub
        .store
        .managed_by_id(id)
        .await?
        .map_or(1, |m| m.identifiers.len() as i64);
    let per_name = hub.config.dns.propagation_timeout_secs as i64 + 30;
    let held_until = hub.now() + LEASE_SECS.max(names * per_name + 120);
    if !hub.store.lease_managed(id, hub.now(), held_until).await? {
        return Ok(());
    }
    let outcome = advance(hub, id).await;
    hub.store.release_managed(id, held_until).await?;
    outcome
}

async fn advance(hub: &Arc<Hub>, id: &str) -> Result<(), Error> {
    let Some(mut m) = hub.store.managed_by_id(id).await? else {
        return Ok(());
    };
    let instance = hub
        .store
        .instance_by_ref(&m.instance_id)
        .await?
        .ok_or_else(|| Error::internal("managing a certificate", "instance vanished"))?;
    // A few steps can follow each other at once (draft → csr → pending → ...).
    for _ in 0..4 {
        let before = (m.status, m.order_id.clone(), m.next_attempt_at);
        match step(hub, &instance, &mut m).await {
            Ok(()) => {}
            Err(e) => failure(hub, &mut m, &e).await?,
        }
        hub.store.update_managed(&m).await?;
        if m.next_attempt_at > hub.now()
            || (m.status, m.order_id.clone(), m.next_attempt_at) == before
        {
            break;
        }
    }
    Ok(())
}

async fn step(
    hub: &Arc<Hub>,
    instance: &Instance,
    m: &mut ManagedCertificate,
) -> Result<(), Error> {
    if m.order_id.is_some() {
        return check_order(hub, instance, m).await;
    }
    let current = match &m.certificate_id {
        Some(id) => hub.store.certificate(&instance.id, id).await?,
        None => None,
    };
    let at = hub.now();
    match &current {
        // Also a first attempt whose key could not be made.
        None if m.sealed_key.is_none() || m.csr.is_none() => {
            make_key(m).await.map(|(key, csr)| {
                m.sealed_key = Some(hub.secrets.seal(&key, &owner(m)));
                m.csr = Some(csr);
            })?;
            m.status = ManagedStatus::Csr;
            m.step = "key and CSR made; checking DNS".into();
            m.next_attempt_at = at;
            Ok(())
        }
        None => issue(hub, instance, m).await,
        Some(cert) => {
            if cert.status == CertificateStatus::Revoked {
                if m.status != ManagedStatus::Revoked {
                    crate::notify::emit(
                        hub,
                        &m.instance_id,
                        "certificate.revoked",
                        event_data(m, cert, hub.now()),
                    )
                    .await;
                }
                m.status = ManagedStatus::Revoked;
            } else if cert.not_after <= at {
                m.status = ManagedStatus::Expired;
            }
            let reminder = remind_expiry(hub, m, cert).await;
            let renewal = m.next_renewal_at.unwrap_or(cert.not_after);
            let revoked = cert.status == CertificateStatus::Revoked;
            if m.renew_requested || (m.auto_renew && (renewal <= at || revoked)) {
                // The new key waits beside the current one until its
                // certificate is issued; made once per renewal. A revoked
                // certificate's key is never reused.
                if (!m.keep_key || revoked) && m.next_csr.is_none() {
                    let (key, csr) = make_key(m).await?;
                    m.next_sealed_key = Some(hub.secrets.seal(&key, &owner(m)));
                    m.next_csr = Some(csr);
                }
                return issue(hub, instance, m).await;
            }
            // Not due: ask the window again later. The chosen time stays
            // unless the window now ends before it (a revocation, an ARI
            // change); choosing again each time would drift to the start.
            let (pick, end) = schedule(hub, instance, m, cert).await;
            if end < renewal {
                m.next_renewal_at = Some(pick);
            }
            m.step = if m.auto_renew {
                format!(
                    "renews at {}",
                    crate::util::rfc3339(m.next_renewal_at.unwrap_or(renewal))
                )
            } else {
                "auto-renew is off".into()
            };
            m.next_attempt_at = m
                .next_renewal_at
                .unwrap_or(renewal)
                .min(at + WINDOW_RECHECK_SECS);
            if !m.auto_renew {
                m.next_attempt_at = at + WINDOW_RECHECK_SECS;
            }
            m.next_attempt_at = m.next_attempt_at.min(reminder).max(at + 1);
            Ok(())
        }
    }
}

/// What notifications say about a managed certificate and its certificate.
fn event_data(m: &ManagedCertificate, cert: &Certificate, at: i64) -> Value {
    json!({
        "managed_certificate": m.id, "name": m.name, "identifiers": m.identifiers,
        "certificate": cert.id, "serial": cert.serial, "issuer": cert.issuer.to_string(),
        "not_after": crate::util::rfc3339(cert.not_after),
        "days_remaining": (cert.not_after - at).div_euclid(86400),
    })
}

/// Sends the expiry reminder whose threshold the certificate has crossed
/// (30, 14, 7 and 1 days before expiry), once per threshold and
/// certificate; returns when the next reminder falls due.
async fn remind_expiry(hub: &Hub, m: &mut ManagedCertificate, cert: &Certificate) -> i64 {
    let at = hub.now();
    if cert.status == CertificateStatus::Revoked || cert.not_after <= at {
        return i64::MAX;
    }
    let (send, next) = reminder(cert.not_after, at, m.expiry_notified);
    // A certificate renewing on schedule is not news: remind only when it
    // will not renew on its own, keeps failing, or is a day late.
    let on_schedule =
        m.auto_renew && m.failures == 0 && m.next_renewal_at.is_some_and(|r| at <= r + 86400);
    if let Some(days) = send.filter(|_| !on_schedule) {
        m.expiry_notified = Some(days);
        let mut data = event_data(m, cert, hub.now());
        data["threshold_days"] = json!(days);
        crate::notify::emit(hub, &m.instance_id, "certificate.expiring", data).await;
    }
    next
}

/// At `now`, for a certificate valid until `not_after` whose reminder for
/// `notified` days was sent last: the reminder to send (the smallest
/// threshold crossed, if not sent yet), and when the next one falls due.
fn reminder(not_after: i64, now: i64, notified: Option<i64>) -> (Option<i64>, i64) {
    let left = not_after - now;
    let send = EXPIRY_REMINDERS
        .iter()
        .copied()
        .filter(|days| left <= days * 86400)
        .min()
        .filter(|days| notified.is_none_or(|sent| sent > *days));
    let next = EXPIRY_REMINDERS
        .iter()
        .map(|days| not_after - days * 86400)
        .filter(|when| *when > now)
        .min()
        .unwrap_or(i64::MAX);
    (send, next)
}

/// A point in [start, end) chosen by `random`, so that certificates issued
/// together do not renew together.
fn spread(start: i64, end: i64, random: u64) -> i64 {
    let width = (end - start).max(1) as u64;
    start + (random % width) as i64
}

/// Without a renewal window: `renew_before_days` (default a third of the
/// lifetime) before expiry, spread over a tenth of that; [start, end).
fn fallback_window(not_before: i64, not_after: i64, renew_before_days: Option<i64>) -> (i64, i64) {
    let lifetime = not_after - not_before;
    let before = renew_before_days
        .map(|d| (d * 86400).min(lifetime))
        .unwrap_or(lifetime / 3);
    let start = not_after - before;
    (start, start + (before / 10).max(1))
}

/// Seconds to wait after `failures` failures in a row: doubling from a
/// minute, capped at an hour.
fn backoff_secs(failures: i64) -> i64 {
    let shift = (failures - 1).clamp(0, 10) as u32;
    (BACKOFF_START_SECS << shift).min(BACKOFF_CAP_SECS)
}

/// A new key of the certificate's type and a CSR for its names.
async fn make_key(m: &ManagedCertificate) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let key_type = m.key_type;
    let names: Vec<String> = m.identifiers.iter().map(|i| i.value.clone()).collect();
    // RSA key generation takes a while: off the async runtime.
    tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, Vec<u8>), Error> {
        let pkcs8 = generate_key(key_type)?;
        let key = rcgen::KeyPair::try_from(pkcs8.as_slice())
            .map_err(|e| Error::internal("loading a new key", e))?;
        let mut params =
            rcgen::CertificateParams::new(names).map_err(|e| Error::internal("making a CSR", e))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| Error::internal("making a CSR", e))?;
        Ok((pkcs8, csr.der().to_vec()))
    })
    .await
    .map_err(|e| Error::internal("making a key", e))?
}

fn generate_key(key_type: KeyType) -> Result<Vec<u8>, Error> {
    let ec = |alg: &'static rcgen::SignatureAlgorithm| {
        rcgen::KeyPair::generate_for(alg)
            .map(|k| k.serialize_der())
            .map_err(|e| Error::internal("making a key", e))
    };
    let rsa = |bits: usize| -> Result<Vec<u8>, Error> {
        use rsa::pkcs8::EncodePrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
            .map_err(|e| Error::internal("making an RSA key", e))?;
        Ok(key
            .to_pkcs8_der()
            .map_err(|e| Error::internal("encoding an RSA key", e))?
            .as_bytes()
            .to_vec())
    };
    match key_type {
        KeyType::EcP256 => ec(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::EcP384 => ec(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyType::Rsa2048 => rsa(2048),
        KeyType::Rsa3072 => rsa(3072),
        KeyType::Rsa4096 => rsa(4096),
    }
}

/// What DNS still lacks for each name: nothing covers it, or its
/// delegation's CNAME is missing or wrong (checked again now).
async fn missing_dns(
    hub: &Hub,
    instance: &Instance,
    m: &ManagedCertificate,
) -> Result<Vec<Value>, Error> {
    let mut missing = Vec::new();
    let delegations = hub.store.delegations(&instance.id).await?;
    for identifier in &m.identifiers {
        let base = identifier.base_name().to_string();
        match solver_for(hub, instance, &challenge_name(&base)).await {
            Err(e) if e.kind == ErrorKind::Dns => {
                missing.push(json!({"identifier": identifier.value, "detail": e.detail}));
            }
            Err(e) => return Err(e),
            Ok(Solver::Zone(_)) => {
                if let Some(mut d) = delegations.iter().find(|d| d.domain == base).cloned() {
                    // Checked at every issuance: the CNAME at the customer's
                    // authoritative servers is the proof of control.
                    crate::dns::delegations::check(hub, &mut d).await?;
                    if d.status != DelegationStatus::Ok {
                        missing.push(json!({
                            "identifier": identifier.value,
                            "detail": d.detail,
                            "cname_name": crate::dns::delegations::cname_name(&d),
                            "cname_target": crate::dns::delegations::cname_target(hub, &d)?,
                            "delegation_status": d.status.as_str(),
                        }));
                    }
                }
            }
            Ok(Solver::Provider(_)) => {}
        }
    }
    Ok(missing)
}

/// Starts an issuance (first or renewal): DNS must cover every name; the
/// local CA's control check is a TXT record the hub publishes and sees;
/// then an order of the instance's own account, finalized with our CSR.
async fn issue(
    hub: &Arc<Hub>,
    instance: &Instance,
    m: &mut ManagedCertificate,
) -> Result<(), Error> {
    let at = hub.now();
    m.missing = missing_dns(hub, instance, m).await?;
    if !m.missing.is_empty() {
        if m.certificate_id.is_none() {
            m.status = ManagedStatus::Pending;
        }
        m.step = format!(
            "waiting for DNS: {}",
            m.missing
                .iter()
                .filter_map(|v| v["detail"].as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
        m.next_attempt_at = at + DNS_RECHECK_SECS;
        return Ok(());
    }
    let relayed = instance.issuer == Issuer::Upstream;
    if !relayed {
        prove_control(hub, instance, m).await?;
    }
    let account = own_account(hub, instance).await?;
    let order = hub
        .store
        .create_order(
            &NewOrder {
                relayed,
                instance_id: instance.id.clone(),
                account_id: account.id.clone(),
                identifiers: m.identifiers.clone(),
                not_before: None,
                not_after: None,
                expires_at: at + hub.config.acme.order_lifetime_secs as i64,
                replaces: None,
                profile: m.profile.clone(),
                authorizations: m
                    .identifiers
                    .iter()
                    .map(|i| NewAuthz::Create {
                        identifier: Identifier {
                            kind: i.kind,
                            value: i.base_name().to_string(),
                        },
                        wildcard: i.is_wildcard(),
                        expires_at: at + hub.config.acme.order_lifetime_secs as i64,
                        challenges: Vec::new(),
                        valid: true,
                    })
                    .collect(),
            },
            |_| None,
        )
        .await?;
    // The order is on record before anything happens at the CA.
    m.order_id = Some(order.id.clone());
    m.step = format!("ordered ({})", order.id);
    hub.store.update_managed(m).await?;
    if relayed {
        crate::issuance::relay::spawn(hub.clone(), order.id.clone());
    }
    let csr = m
        .next_csr
        .clone()
        .or_else(|| m.csr.clone())
        .unwrap_or_default();
    crate::orders::finalize(hub, instance, &account, &order.id, &csr).await?;
    check_order(hub, instance, m).await
}

/// The local CA issues to names the hub can publish in: a random TXT at
/// each `_acme-challenge` name, seen at the authoritative servers, then
/// removed (the same proof dns-01 asks of an ACME client).
async fn prove_control(
    hub: &Hub,
    instance: &Instance,
    m: &ManagedCertificate,
) -> Result<(), Error> {
    for identifier in &m.identifiers {
        let name = challenge_name(identifier.base_name());
        let value = b64(&random_bytes::<32>());
        let solver = solver_for(hub, instance, &name).await?;
        solver.publish(hub, &name, &value).await?;
        let seen = solver.wait_visible(hub, &name, &value).await;
        if let Err(e) = solver.cleanup(hub, &name, &value).await {
            tracing::warn!(record = %name, error = %e, "removing a control record failed");
        }
        seen?;
    }
    Ok(())
}

/// The instance's own ACME account, which holds the orders of managed
/// certificates. Its JWK is empty: no one can sign as it over ACME.
async fn own_account(hub: &Hub, instance: &Instance) -> Result<Account, Error> {
    let thumbprint = format!("acmehub-managed:{}", instance.id);
    if let Some(a) = hub
        .store
        .account_by_thumbprint(&instance.id, &thumbprint)
        .await?
    {
        return Ok(a);
    }
    match hub
        .store
        .insert_account(&instance.id, &thumbprint, "{}", &[], true, None)
        .await
    {
        Ok(a) => Ok(a),
        // Another worker made it first.
        Err(crate::store::StoreError::Conflict(_)) => hub
            .store
            .account_by_thumbprint(&instance.id, &thumbprint)
            .await?
            .ok_or_else(|| Error::internal("managing a certificate", "own account vanished")),
        Err(e) => Err(e.into()),
    }
}

/// Follows the order in flight: valid → the certificate is served now.
async fn check_order(
    hub: &Hub,
    instance: &Instance,
    m: &mut ManagedCertificate,
) -> Result<(), Error> {
    let Some(order_id) = m.order_id.clone() else {
        return Ok(());
    };
    let order = hub
        .store
        .order(&instance.id, &order_id)
        .await?
        .ok_or_else(|| Error::internal("managing a certificate", "its order vanished"))?;
    match crate::orders::effective_order_status(&order, hub.now()) {
        OrderStatus::Valid => {
            let cert_id = order.certificate_id.clone().ok_or_else(|| {
                Error::internal("managing a certificate", "valid order without certificate")
            })?;
            let cert = hub
                .store
                .certificate(&instance.id, &cert_id)
                .await?
                .ok_or_else(|| Error::internal("managing a certificate", "certificate vanished"))?;
            let renewed = m.certificate_id.is_some();
            m.certificate_id = Some(cert_id.clone());
            m.expiry_notified = None;
            if m.renew_requested {
                m.renew_requested = false;
                hub.store.clear_managed_renewal_request(&m.id).await?;
            }
            // The renewal's key is the one now served.
            if let Some(key) = m.next_sealed_key.take() {
                m.sealed_key = Some(key);
                m.csr = m.next_csr.take();
            }
            m.order_id = None;
            m.status = ManagedStatus::Active;
            m.failures = 0;
            m.error = None;
            let at = hub.now();
            let (renewal, _) = schedule(hub, instance, m, &cert).await;
            m.next_renewal_at = Some(renewal);
            // Looked at again at once: expiry reminders and the window.
            m.next_attempt_at = at;
            m.step = format!("renews at {}", crate::util::rfc3339(renewal));
            let event = if renewed { "renewed" } else { "issued" };
            push_history(
                m,
                json!({"at": at, "event": event, "serial": cert.serial, "certificate": cert_id,
                       "not_after": cert.not_after, "issuer": cert.issuer.to_string()}),
            );
            audit::record(
                hub,
                Some(&instance.id),
                &Actor::Hub,
                &format!("managed.{event}"),
                ("managed-certificate", &m.id),
                json!({"name": m.name, "serial": cert.serial, "certificate": cert_id}),
            )
            .await;
            crate::notify::emit(
                hub,
                &instance.id,
                &format!("certificate.{event}"),
                event_data(m, &cert, hub.now()),
            )
            .await;
            Ok(())
        }
        OrderStatus::Invalid => {
            m.order_id = None;
            let detail = order
                .error
                .as_deref()
                .and_then(|e| serde_json::from_str::<Value>(e).ok())
                .and_then(|p| p["detail"].as_str().map(str::to_string))
                .unwrap_or_else(|| "the order failed".into());
            Err(Error::new(ErrorKind::ServerInternal, detail))
        }
        _ => {
            m.step = format!("the CA is issuing (order {order_id})");
            m.next_attempt_at = hub.now() + ORDER_POLL_SECS;
            Ok(())
        }
    }
}

/// When to renew `cert`: inside its renewal window (RFC 9773, which the
/// local CA answers too and the relay asks upstream) at a random point, so
/// certificates issued together do not renew together; without a window,
/// `renew_before_days` (default a third of the lifetime) before expiry,
/// spread over a tenth of that.
async fn schedule(
    hub: &Hub,
    instance: &Instance,
    m: &ManagedCertificate,
    cert: &Certificate,
) -> (i64, i64) {
    let random = u64::from_le_bytes(random_bytes::<8>());
    if m.renew_before_days.is_none() {
        if let Some(ari) = &cert.ari_id {
            if let Ok(w) = crate::orders::renewal_info(hub, instance, ari).await {
                let end = w.end.max(w.start + 1);
                return (spread(w.start, end, random), end);
            }
        }
    }
    let (start, end) = fallback_window(cert.not_before, cert.not_after, m.renew_before_days);
    (spread(start, end, random), end)
}

/// Records a failed attempt and when to try again (doubling from a minute,
/// capped at an hour). The certificate keeps serving while it is valid.
async fn failure(hub: &Hub, m: &mut ManagedCertificate, e: &Error) -> Result<(), Error> {
    m.failures += 1;
    m.error = Some(e.detail.clone());
    m.order_id = None;
    if m.certificate_id.is_none() {
        m.status = ManagedStatus::Failed;
    }
    let backoff = backoff_secs(m.failures);
    let at = hub.now();
    m.next_attempt_at = at + backoff;
    m.step = format!(
        "attempt {} failed; next attempt at {}",
        m.failures,
        crate::util::rfc3339(m.next_attempt_at)
    );
    push_history(m, json!({"at": at, "event": "failed", "error": e.detail}));
    tracing::warn!(managed = %m.id, name = %m.name, failures = m.failures, error = %e.detail, "managed certificate attempt failed");
    if m.failures == FAILING_AFTER {
        crate::notify::emit(
            hub,
            &m.instance_id,
            "certificate.renewal_failing",
            json!({"managed_certificate": m.id, "name": m.name, "identifiers": m.identifiers,
                   "failures": m.failures, "error": e.detail,
                   "next_attempt_at": crate::util::rfc3339(m.next_attempt_at)}),
        )
        .await;
    }
    audit::record(
        hub,
        Some(&m.instance_id),
        &Actor::Hub,
        "managed.failed",
        ("managed-certificate", &m.id),
        json!({"name": m.name, "failures": m.failures, "error": e.detail}),
    )
    .await;
    Ok(())
}

fn push_history(m: &mut ManagedCertificate, entry: Value) {
    m.history.push(entry);
    if m.history.len() > MAX_HISTORY {
        let extra = m.history.len() - MAX_HISTORY;
        m.history.drain(..extra);
    }
}

#[cfg(test)]
mod tests {
    //! The clock is an argument here: each case says what time it is.
    use super::*;

    const DAY: i64 = 86400;

    #[test]
    fn expiry_reminders_come_once_at_each_threshold() {
        let not_after = 1_000 * DAY;
        // 40 days out: nothing yet; the next one is due at 30 days.
        assert_eq!(
            reminder(not_after, not_after - 40 * DAY, None),
            (None, not_after - 30 * DAY)
        );
        // At 30 days: the 30-day reminder; then the 14-day one is next.
        assert_eq!(
            reminder(not_after, not_after - 30 * DAY, None),
            (Some(30), not_after - 14 * DAY)
        );
        // Sent already: not again.
        assert_eq!(reminder(not_after, not_after - 20 * DAY, Some(30)).0, None);
        // A clock that jumped past several thresholds sends the smallest once.
        assert_eq!(
            reminder(not_after, not_after - 5 * DAY, Some(30)).0,
            Some(7)
        );
        assert_eq!(reminder(not_after, not_after - 5 * DAY, Some(7)).0, None);
        // The last one, a day before.
        let (send, next) = reminder(not_after, not_after - DAY + 60, Some(7));
        assert_eq!((send, next), (Some(1), i64::MAX));
        // A new certificate (nothing sent for it) well inside 14 days.
        assert_eq!(reminder(not_after, not_after - 10 * DAY, None).0, Some(14));
    }

    #[test]
    fn renewals_spread_over_their_window() {
        let (start, end) = (100 * DAY, 110 * DAY);
        let picks: Vec<i64> = (0u64..1000)
            .map(|i| spread(start, end, i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        assert!(picks.iter().all(|p| (start..end).contains(p)));
        // A thousand certificates issued together land on many different seconds,
        // across the whole window.
        let mut distinct = picks.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 990);
        assert!(*distinct.first().unwrap() < start + DAY && *distinct.last().unwrap() > end - DAY);
        // An empty window still gives its start.
        assert_eq!(spread(start, start, 12345), start);
    }

    #[test]
    fn without_a_window_renewal_is_renew_before_days_or_a_third_of_the_lifetime() {
        let (nb, na) = (0, 90 * DAY);
        assert_eq!(fallback_window(nb, na, None), (60 * DAY, 63 * DAY));
        assert_eq!(fallback_window(nb, na, Some(10)), (80 * DAY, 81 * DAY));
        // More days than the lifetime: renew from the start.
        assert_eq!(fallback_window(nb, na, Some(365)).0, nb);
    }

    #[test]
    fn backoff_doubles_from_a_minute_and_stops_at_an_hour() {
        let waits: Vec<i64> = (1..=9).map(backoff_secs).collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(backoff_secs(1000), 3600);
    }
}
