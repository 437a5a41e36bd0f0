//! The running hub: configuration plus the long-lived parts (store, CA,
//! validator, nonces, technical zone) that `bootstrap` opened at start, and
//! the small shared state of a running process (instance cache, throttles,
//! the test clock).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use crate::ca::local::LocalCa;
use crate::config::Config;
use crate::error::Error;
use crate::nonce::Nonces;
use crate::secrets::MasterKey;
use crate::store::{Instance, Store};
use crate::validation::Validator;

/// How long a looked-up instance is reused before it is read again.
const INSTANCE_CACHE_TTL: Duration = Duration::from_secs(2);
/// How long a lookup of an instance held in memory may take before the copy
/// serves instead.
const INSTANCE_STALE_GRACE: Duration = Duration::from_secs(1);

/// The instance every fresh hub has.
pub const DEFAULT_INSTANCE: &str = "default";

/// Refusals recorded in the audit log per account (or client address) and
/// minute; more are counted in metrics and logged at debug level only.
pub const REFUSAL_EVENTS_PER_MINUTE: u32 = 10;
/// Accounts and addresses whose refusals are counted at once.
const REFUSAL_EVENT_KEYS: usize = 10_000;

/// The long-lived parts a hub is assembled from.
pub struct Parts {
    pub config: Config,
    pub store: Store,
    pub ca: LocalCa,
    pub validator: Validator,
    pub nonces: Nonces,
    pub technical_zone: Option<crate::zone::TechnicalZone>,
    pub secrets: MasterKey,
    pub admin_token_hash: String,
}

pub struct Hub {
    pub config: Config,
    pub store: Store,
    pub ca: LocalCa,
    pub validator: Validator,
    pub nonces: Nonces,
    /// The technical zone, when `[dns.technical_zone]` is configured.
    pub technical_zone: Option<crate::zone::TechnicalZone>,
    /// Seals and opens stored secrets.
    pub secrets: crate::secrets::MasterKey,
    /// SHA-256 (hex) of the bootstrap admin token.
    pub admin_token_hash: String,
    /// Instances by name, each with the time it was read. Entries older
    /// than [`INSTANCE_CACHE_TTL`] are read again, so a change made through
    /// another replica is seen within that time; this replica's own changes
    /// drop the entry at once ([`Hub::forget_instance`]).
    instances: RwLock<HashMap<String, (Instance, Instant)>>,
    /// Seconds added to the clock of the managed-certificate job (renewal
    /// windows, reminders, backoff): 0 except when a test moves time on.
    clock_offset: std::sync::atomic::AtomicI64,
    /// Set while this hub delivers notifications: one sweep at a time per
    /// hub (replicas coordinate through each notification's lease).
    pub notify_sweeping: std::sync::atomic::AtomicBool,
    /// Audit events of refused requests, per account (or client address):
    /// a flood of refusals cannot fill the audit log.
    pub refusal_events: crate::policy::Throttle,
    /// Failed console sign-ins, per user name and client address.
    pub sign_in_failures: crate::policy::SignInFailures,
}

impl Hub {
    /// Assembles the running hub from its opened parts (`bootstrap::open`
    /// opens them); `default` is the instance every hub has, cached at once.
    pub fn new(parts: Parts, default: Instance) -> Hub {
        let instances = RwLock::new(HashMap::from([(
            default.name.clone(),
            (default, Instant::now()),
        )]));
        Hub {
            config: parts.config,
            store: parts.store,
            ca: parts.ca,
            validator: parts.validator,
            nonces: parts.nonces,
            technical_zone: parts.technical_zone,
            secrets: parts.secrets,
            admin_token_hash: parts.admin_token_hash,
            instances,
            clock_offset: std::sync::atomic::AtomicI64::new(0),
            notify_sweeping: std::sync::atomic::AtomicBool::new(false),
            refusal_events: crate::policy::Throttle::new(
                REFUSAL_EVENTS_PER_MINUTE,
                60,
                REFUSAL_EVENT_KEYS,
            ),
            sign_in_failures: Default::default(),
        }
    }

    /// The time the managed-certificate job goes by: the system clock, plus
    /// what [`Hub::advance_clock`] added.
    pub fn now(&self) -> i64 {
        crate::util::now() + self.clock_offset.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Moves [`Hub::now`] on by `secs` (for tests of renewal and reminders).
    pub fn advance_clock(&self, secs: i64) {
        self.clock_offset
            .fetch_add(secs, std::sync::atomic::Ordering::Relaxed);
    }

    /// `{public_url}/acme/{instance}/{path}`.
    pub fn acme_url(&self, instance: &str, path: &str) -> String {
        format!("{}/acme/{instance}/{path}", self.config.public_url)
    }

    /// An account's URL, as its `Location` gave it: what dns-persist-01
    /// records name and the dns-account-01 label is derived from.
    pub fn account_url(&self, instance: &str, account_id: &str) -> String {
        self.acme_url(instance, &format!("account/{account_id}"))
    }

    pub fn directory_url(&self, instance: &str) -> String {
        self.acme_url(instance, "directory")
    }

    /// Where the local CA's CRL is published (named in every certificate).
    pub fn crl_url(&self) -> String {
        format!("{}/ca/crl", self.config.public_url)
    }

    /// An instance by name, from memory when read recently. When the
    /// database does not answer within [`INSTANCE_STALE_GRACE`], an older
    /// copy serves, so that the directory stays up while the database is
    /// away (anything that needs the database still fails on its own).
    pub async fn instance(&self, name: &str) -> Result<Instance, Error> {
        let cached = self
            .instances
            .read()
            .ok()
            .and_then(|m| m.get(name).cloned());
        if let Some((instance, at)) = &cached
            && at.elapsed() < INSTANCE_CACHE_TTL
        {
            return Ok(instance.clone());
        }
        let lookup = self.store.instance_by_name(name);
        let found = match cached {
            Some((stale, _)) => match tokio::time::timeout(INSTANCE_STALE_GRACE, lookup).await {
                Ok(Ok(found)) => found,
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "the database did not answer".to_string(),
                    };
                    tracing::warn!(instance = name, error = %why, "instance lookup failed; serving the copy in memory");
                    return Ok(stale);
                }
            },
            None => lookup.await?,
        };
        let Some(instance) = found else {
            self.forget_instance(name);
            return Err(Error::not_found(format!(
                "there is no ACME instance named {name:?}"
            )));
        };
        if let Ok(mut map) = self.instances.write() {
            map.insert(name.to_string(), (instance.clone(), Instant::now()));
        }
        Ok(instance)
    }

    /// Serves the technical zone's records as the store holds them now.
    pub async fn refresh_technical_zone(&self) {
        if let Some(zone) = &self.technical_zone {
            zone.reload(&self.store).await;
        }
    }

    /// Drops a cached instance after it changed.
    pub fn forget_instance(&self, name: &str) {
        if let Ok(mut map) = self.instances.write() {
            map.remove(name);
        }
    }
}
