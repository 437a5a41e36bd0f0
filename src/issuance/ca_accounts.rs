//! CA accounts of an instance (DESIGN: *CA account*): every field checked,
//! the EAB HMAC key and the upstream account key sealed, and "Save and
//! Test": fetch the directory, register the account, report both.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit::{self, Actor};
use crate::error::Error;
use crate::hub::Hub;
use crate::issuance::upstream::{UpstreamHttp, known_ca};
use crate::store::{CaAccount, CaAccountStatus, Environment, Instance, StoreError};
use crate::tenancy::fields::{check_environment, check_name, double_option, validate_description};
use crate::util::{now, random_id};

/// A CA account as sent to the API; on update, absent fields keep their value.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaAccountSettings {
    pub name: Option<String>,
    pub description: Option<String>,
    /// `letsencrypt`, `letsencrypt-staging`, `zerossl`, `google`,
    /// `google-staging`, `buypass`, `sslcom` or `custom`; fixed once created.
    pub ca: Option<String>,
    /// For `custom` (an https:// ACME directory); others use the CA's own.
    pub directory_url: Option<String>,
    /// `production` or `staging`; a named CA sets it.
    pub environment: Option<String>,
    /// Contact for the upstream account.
    pub email: Option<String>,
    pub eab_kid: Option<String>,
    /// base64url HMAC key from the CA; write-only.
    pub eab_hmac_key: Option<String>,
    pub allow_wildcard: Option<bool>,
    /// TTL of the DNS-01 records published for this CA's orders, seconds.
    pub dns_ttl: Option<i64>,
    /// Deadline of one upstream API call, seconds.
    pub api_timeout_s: Option<i64>,
    /// Lower is tried first (after the preferred account).
    pub priority: Option<i64>,
    /// The instance's first choice (one per instance).
    pub preferred: Option<bool>,
    /// PEM roots for a private or test CA's HTTPS; null for the public roots.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub trusted_roots_pem: Option<Option<String>>,
    /// CAA issuer names that allow this CA; known for the named CAs.
    pub caa_identities: Option<Vec<String>>,
}

fn owner(a: &CaAccount) -> String {
    crate::secrets::owner("ca-account", &a.instance_id, &a.id)
}

fn apply(hub: &Hub, a: &mut CaAccount, s: &CaAccountSettings, creating: bool) -> Result<(), Error> {
    if let Some(d) = &s.description {
        validate_description(d)?;
        a.description = d.clone();
    }
    if let Some(url) = &s.directory_url {
        if a.ca != "custom" {
            return Err(Error::invalid(
                "directory_url",
                format!(
                    "{} has a fixed directory; directory_url is for \"custom\" CAs",
                    a.ca
                ),
            ));
        }
        let parsed = url::Url::parse(url).map_err(|e| {
            Error::invalid("directory_url", format!("directory_url is not a URL: {e}"))
        })?;
        if parsed.scheme() != "https" {
            return Err(Error::invalid(
                "directory_url",
                "directory_url must be an https:// URL",
            ));
        }
        a.directory_url = url.clone();
    }
    if let Some(env) = &s.environment {
        let env = check_environment(env, "environment")?;
        if let Some(known) = known_ca(&a.ca) {
            if known.environment != env {
                return Err(Error::invalid(
                    "environment",
                    format!("{} is a {} CA", known.name, known.environment),
                ));
            }
        }
        a.environment = env;
    }
    if let Some(email) = &s.email {
        if !email.is_empty() {
            crate::policy::validate_contacts(&[format!("mailto:{email}")])
                .map_err(|e| Error::invalid("email", e.detail))?;
        }
        a.email = email.clone();
    }
    match (&s.eab_kid, &s.eab_hmac_key) {
        (Some(kid), Some(key)) => {
            let raw = crate::jws::b64_decode(key.trim_end_matches('='))
                .or_else(|_| {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD
                        .decode(key)
                        .map_err(|_| Error::malformed("bad base64"))
                })
                .map_err(|_| {
                    Error::invalid("eab_hmac_key", "eab_hmac_key must be base64url (or base64)")
                })?;
            if kid.is_empty() || raw.is_empty() {
                return Err(Error::invalid(
                    "eab_kid",
                    "eab_kid and eab_hmac_key must not be empty",
                ));
            }
            a.eab_kid = Some(kid.clone());
            a.sealed_eab_hmac = Some(hub.secrets.seal(&raw, &owner(a)));
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(Error::invalid("eab_hmac_key", "eab_kid needs eab_hmac_key"));
        }
        (None, Some(_)) => return Err(Error::invalid("eab_kid", "eab_hmac_key needs eab_kid")),
    }
    if let Some(w) = s.allow_wildcard {
        a.allow_wildcard = w;
    }
    let ranged = |field: &str,
                  v: Option<i64>,
                  range: std::ops::RangeInclusive<i64>|
     -> Result<Option<i64>, Error> {
        match v {
            Some(v) if !range.contains(&v) => Err(Error::invalid(
                field,
                format!("{field} must be {} to {}", range.start(), range.end()),
            )),
            other => Ok(other),
        }
    };
    if let Some(v) = ranged("dns_ttl", s.dns_ttl, 1..=86400)? {
        a.dns_ttl = v;
    }
    if let Some(v) = ranged("api_timeout_s", s.api_timeout_s, 1..=600)? {
        a.api_timeout_s = v;
    }
    if let Some(v) = ranged("priority", s.priority, 0..=1_000_000)? {
        a.priority = v;
    }
    if let Some(p) = s.preferred {
        a.preferred = p;
    }
    if let Some(roots) = &s.trusted_roots_pem {
        if let Some(pem) = roots {
            UpstreamHttp::new(Some(pem), std::time::Duration::from_secs(1))
                .map_err(|why| Error::invalid("trusted_roots_pem", why))?;
        }
        a.trusted_roots_pem = roots.clone();
    }
    if let Some(caa) = &s.caa_identities {
        for c in caa {
            crate::policy::Identifier::dns(c).map_err(|_| {
                Error::invalid("caa_identities", format!("{c:?} is not a domain name"))
            })?;
        }
        a.caa_identities = caa.iter().map(|c| c.to_ascii_lowercase()).collect();
    }
    if creating && a.ca == "custom" && a.directory_url.is_empty() {
        return Err(Error::invalid(
            "directory_url",
            "a custom CA needs directory_url",
        ));
    }
    if creating {
        if let Some(known) = known_ca(&a.ca) {
            if known.eab_required && a.eab_kid.is_none() {
                return Err(Error::invalid(
                    "eab_kid",
                    format!(
                        "{} requires external account binding: give eab_kid and eab_hmac_key",
                        known.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

pub async fn create_ca_account(
    hub: &Hub,
    actor: &Actor,
    instance: &Instance,
    s: &CaAccountSettings,
) -> Result<CaAccount, Error> {
    let name = s
        .name
        .clone()
        .ok_or_else(|| Error::invalid("name", "name is required"))?;
    check_name("CA account", &name)?;
    let ca =
        s.ca.clone()
            .ok_or_else(|| Error::invalid("ca", "ca is required"))?;
    let known = known_ca(&ca);
    if known.is_none() && ca != "custom" {
        return Err(Error::invalid(
            "ca",
            format!(
                "ca {ca:?} is unknown; use letsencrypt, letsencrypt-staging, zerossl, google, google-staging, buypass, sslcom or custom"
            ),
        ));
    }
    let now = now();
    let mut account = CaAccount {
        id: random_id(),
        instance_id: instance.id.clone(),
        name,
        description: String::new(),
        ca: ca.clone(),
        directory_url: known
            .map(|k| k.directory_url.to_string())
            .unwrap_or_default(),
        environment: known
            .map(|k| k.environment)
            .unwrap_or(Environment::Production),
        email: String::new(),
        eab_kid: None,
        sealed_eab_hmac: None,
        allow_wildcard: true,
        dns_ttl: i64::from(hub.config.dns.record_ttl),
        api_timeout_s: 30,
        priority: 100,
        preferred: false,
        trusted_roots_pem: None,
        caa_identities: known
            .map(|k| k.caa_identities.iter().map(|c| c.to_string()).collect())
            .unwrap_or_default(),
        profiles: Default::default(),
        account_url: None,
        sealed_credentials: None,
        status: CaAccountStatus::Unregistered,
        status_detail: "not registered yet: test the account".into(),
        created_at: now,
        updated_at: now,
    };
    apply(hub, &mut account, s, true)?;
    hub.store.insert_ca_account(&account).await?;
    if account.preferred {
        hub.store
            .prefer_ca_account(&instance.id, &account.id)
            .await?;
    }
    audit::record(
        hub,
        Some(&instance.id),
        actor,
        "ca-account.create",
        ("ca-account", &account.id),
        json!({"name": account.name, "ca": account.ca, "directory_url": account.directory_url,
               "environment": account.environment.as_str(), "eab": account.eab_kid.is_some()}),
    )
    .await;
    Ok(account)
}

pub async fn update_ca_account(
    hub: &Hub,
    actor: &Actor,
    account: &CaAccount,
    s: &CaAccountSettings,
) -> Result<CaAccount, Error> {
    if s.name.as_ref().is_some_and(|n| *n != account.name) {
        return Err(Error::invalid("name", "a CA account cannot be renamed"));
    }
    if s.ca.as_ref().is_some_and(|c| *c != account.ca) {
        return Err(Error::invalid(
            "ca",
            "a CA account's CA is fixed; create another account",
        ));
    }
    let mut updated = account.clone();
    apply(hub, &mut updated, s, false)?;
    // A new directory or binding means a new upstream account.
    if updated.directory_url != account.directory_url || s.eab_kid.is_some() {
        updated.account_url = None;
        updated.sealed_credentials = None;
        updated.status = CaAccountStatus::Unregistered;
        updated.status_detail = "changed: test the account to register it".into();
    }
    updated.updated_at = now();
    hub.store
        .update_ca_account(&updated)
        .await
        .map_err(|e| match e {
            StoreError::Guard => Error::not_found("the CA account was deleted meanwhile"),
            other => other.into(),
        })?;
    if s.preferred == Some(true) {
        hub.store
            .prefer_ca_account(&account.instance_id, &account.id)
            .await?;
    }
    audit::record(
        hub,
        Some(&account.instance_id),
        actor,
        "ca-account.update",
        ("ca-account", &account.id),
        json!({"name": account.name}),
    )
    .await;
    Ok(updated)
}

pub async fn delete_ca_account(hub: &Hub, actor: &Actor, account: &CaAccount) -> Result<(), Error> {
    hub.store
        .delete_ca_account(&account.id)
        .await
        .map_err(|e| match e {
            StoreError::Guard => Error::not_found("the CA account was deleted meanwhile"),
            other => other.into(),
        })?;
    audit::record(
        hub,
        Some(&account.instance_id),
        actor,
        "ca-account.delete",
        ("ca-account", &account.id),
        json!({"name": account.name}),
    )
    .await;
    Ok(())
}

/// What "Save and Test" found.
#[derive(Debug, Clone)]
pub struct TestReport {
    pub available: bool,
    pub detail: String,
    pub endpoints: Value,
    pub account_status: CaAccountStatus,
    pub latency_ms: Option<u64>,
}

/// Held while a CA account is registered upstream.
static REGISTERING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fetches the directory and registers the account when it is not yet
/// (EAB when configured); records the outcome on the account.
pub async fn test_ca_account(
    hub: &Hub,
    actor: &Actor,
    account: &CaAccount,
) -> Result<(TestReport, CaAccount), Error> {
    let timeout = std::time::Duration::from_secs(account.api_timeout_s.max(1) as u64);
    let unavailable = |detail: String| TestReport {
        available: false,
        detail,
        endpoints: json!({}),
        account_status: account.status,
        latency_ms: None,
    };
    let http = match UpstreamHttp::new(account.trusted_roots_pem.as_deref(), timeout) {
        Ok(h) => h,
        Err(why) => return Ok((unavailable(why), account.clone())),
    };
    let (directory, latency) = match http.directory(&account.directory_url).await {
        Ok(found) => found,
        Err(why) => {
            return Ok((
                unavailable(format!("{}: {why}", account.directory_url)),
                account.clone(),
            ));
        }
    };
    let mut updated = account.clone();
    // The profiles the CA offers now (draft-ietf-acme-profiles §3).
    let offered: std::collections::BTreeMap<String, String> = directory["meta"]["profiles"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    if offered != updated.profiles {
        updated.profiles = offered;
        if account.sealed_credentials.is_some() {
            updated.updated_at = now();
            hub.store.update_ca_account(&updated).await?;
        }
    }
    // One registration per account: within this process a lock, across
    // replicas a write guarded on the account being unregistered still.
    let registering = REGISTERING.lock().await;
    if account.sealed_credentials.is_none()
        && let Some(stored) = hub
            .store
            .ca_account(&account.instance_id, &account.id)
            .await?
        && stored.sealed_credentials.is_some()
    {
        // Registered meanwhile (another request, or another replica).
        updated.account_url = stored.account_url;
        updated.sealed_credentials = stored.sealed_credentials;
        updated.status = stored.status;
        updated.status_detail = stored.status_detail;
    } else if account.sealed_credentials.is_none() {
        let hmac = match &account.sealed_eab_hmac {
            Some(sealed) => Some(
                hub.secrets
                    .open(sealed, &owner(account))
                    .map_err(|e| Error::internal("opening a CA account's EAB key", e))?,
            ),
            None => None,
        };
        let eab = account.eab_kid.as_deref().zip(hmac.as_deref());
        match http
            .register(&account.directory_url, &account.email, eab)
            .await
        {
            Ok((url, credentials)) => {
                updated.account_url = Some(url);
                updated.sealed_credentials =
                    Some(hub.secrets.seal(credentials.as_bytes(), &owner(account)));
                updated.status = CaAccountStatus::Valid;
                updated.status_detail = "registered".into();
            }
            Err(why) => {
                updated.status = CaAccountStatus::Error;
                updated.status_detail = why;
            }
        }
        updated.updated_at = now();
        match hub.store.register_ca_account(&updated).await {
            Ok(()) => {}
            Err(crate::store::StoreError::Guard) => {
                // Another replica registered it first: use its registration
                // (ours stays unused at the CA).
                let stored = hub
                    .store
                    .ca_account(&account.instance_id, &account.id)
                    .await?
                    .ok_or_else(|| Error::not_found("the CA account was deleted"))?;
                tracing::info!(account = %account.name, "another process registered the CA account first; using its registration");
                drop(registering);
                return Box::pin(test_ca_account(hub, actor, &stored)).await;
            }
            Err(e) => return Err(e.into()),
        }
        audit::record(
            hub,
            Some(&account.instance_id),
            actor,
            "ca-account.register",
            ("ca-account", &account.id),
            json!({"name": account.name, "status": updated.status.as_str(), "account_url": updated.account_url}),
        )
        .await;
    }
    let endpoints: serde_json::Map<String, Value> = directory
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, v)| v.is_string())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let report = TestReport {
        available: updated.status == CaAccountStatus::Valid,
        detail: if updated.status == CaAccountStatus::Valid {
            "API is available".into()
        } else {
            format!(
                "the directory answers, but the account is not usable: {}",
                updated.status_detail
            )
        },
        endpoints: Value::Object(endpoints),
        account_status: updated.status,
        latency_ms: Some(latency),
    };
    Ok((report, updated))
}
