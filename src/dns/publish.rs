//! Publishing DNS-01 TXT records (RFC 8555 §8.4) for the names an instance
//! covers: [`ChallengePublisher`] is the seam, with a provider
//! implementation (a zone binding's credential, through dns-update, adding
//! to the RRset so other values survive) and a technical-zone one (a
//! delegation's label in the zone the hub serves). [`solver_for`] picks one
//! per name; when none applies the error starts with
//! `DNS validation cannot proceed`.

use std::time::Duration;

use dns_update::{DnsRecord, DnsRecordType, DnsUpdater};
use serde_json::json;

use super::providers;
use crate::audit::{self, Actor};
use crate::error::{Error, ErrorKind};
use crate::hub::Hub;
use crate::store::{Credential, DnsZone, Instance, ZoneRecordWrite};
use crate::util::now;

/// The prefix every "nothing can publish this record" error starts with.
pub const CANNOT_PROCEED: &str = "DNS validation cannot proceed";

/// How long a technical-zone TXT value is served when nobody removes it.
const ZONE_RECORD_LIFETIME: i64 = 86400;

/// Puts TXT values at names and takes them away again.
#[allow(async_fn_in_trait)]
pub trait ChallengePublisher {
    /// Adds `value` to the TXT RRset at `name` (idempotent).
    async fn publish(&self, hub: &Hub, name: &str, value: &str) -> Result<(), Error>;
    /// Removes `value` from the TXT RRset at `name` (idempotent).
    async fn cleanup(&self, hub: &Hub, name: &str, value: &str) -> Result<(), Error>;
    /// Waits until the zone's authoritative servers show `value` at `name`.
    async fn wait_visible(&self, hub: &Hub, name: &str, value: &str) -> Result<(), Error>;
}

/// A zone binding's provider.
pub struct ProviderPublisher {
    pub zone: DnsZone,
    pub credential: Credential,
    client: DnsUpdater,
}

impl ProviderPublisher {
    pub fn new(hub: &Hub, zone: DnsZone, credential: Credential) -> Result<Self, Error> {
        let kind = providers::kind(&credential.kind)
            .ok_or_else(|| Error::internal("loading a credential", "unknown kind"))?;
        let secret = crate::dns::credentials::open_secret(hub, &credential)?;
        let timeout = Duration::from_secs(hub.config.dns.provider_timeout_secs.max(1));
        let client = providers::client(kind, &credential.config, &secret, Some(timeout))
            .map_err(|why| cannot_proceed(&zone.zone, &zone.zone, Some(&credential), &why))?;
        Ok(Self {
            zone,
            credential,
            client,
        })
    }

    async fn used(
        &self,
        hub: &Hub,
        action: &str,
        name: &str,
        outcome: Result<(), String>,
    ) -> Result<(), Error> {
        let at = now();
        if let Err(e) = hub.store.touch_credential(&self.credential.id, at).await {
            tracing::warn!(credential = %self.credential.name, error = %e, "recording credential use failed");
        }
        audit::record(
            hub,
            Some(&self.credential.instance_id),
            &Actor::Hub,
            "credential.use",
            ("credential", &self.credential.id),
            json!({"name": self.credential.name, "operation": action, "record": name,
                   "zone": self.zone.zone, "ok": outcome.is_ok()}),
        )
        .await;
        outcome.map_err(|why| cannot_proceed(name, &self.zone.zone, Some(&self.credential), &why))
    }
}

impl ChallengePublisher for ProviderPublisher {
    async fn publish(&self, hub: &Hub, name: &str, value: &str) -> Result<(), Error> {
        let outcome = self
            .client
            .add_to_rrset(
                name,
                DnsRecordType::TXT,
                hub.config.dns.record_ttl,
                vec![DnsRecord::TXT(value.to_string())],
                self.zone.zone.as_str(),
            )
            .await
            .map_err(|e| {
                format!(
                    "{} refused to add the TXT record: {}",
                    self.zone.provider,
                    providers::describe(e)
                )
            });
        tracing::info!(record = name, zone = %self.zone.zone, credential = %self.credential.name, ok = outcome.is_ok(), "TXT record published");
        self.used(hub, "publish", name, outcome).await
    }

    async fn cleanup(&self, hub: &Hub, name: &str, value: &str) -> Result<(), Error> {
        let outcome = self
            .client
            .remove_from_rrset(
                name,
                DnsRecordType::TXT,
                vec![DnsRecord::TXT(value.to_string())],
                self.zone.zone.as_str(),
            )
            .await
            .map_err(|e| {
                format!(
                    "{} refused to remove the TXT record: {}",
                    self.zone.provider,
                    providers::describe(e)
                )
            });
        tracing::info!(record = name, zone = %self.zone.zone, ok = outcome.is_ok(), "TXT record removed");
        self.used(hub, "cleanup", name, outcome).await
    }

    async fn wait_visible(&self, hub: &Hub, name: &str, value: &str) -> Result<(), Error> {
        super::propagation::wait(
            hub.validator.resolver(),
            &self.zone.zone,
            name,
            value,
            true,
            hub.config.dns.authoritative_port,
            Duration::from_secs(hub.config.dns.propagation_timeout_secs.max(1)),
        )
        .await
        .map(|_| ())
        .map_err(|why| {
            Error::new(
                ErrorKind::Dns,
                format!("the TXT record at {name} is not live yet: {why}"),
            )
        })
    }
}

/// A delegation's label in the technical zone the hub serves.
pub struct ZonePublisher {
    /// `<label>.<technical zone>`: where the customer's CNAME points.
    pub target: String,
}

impl ChallengePublisher for ZonePublisher {
    async fn publish(&self, hub: &Hub, _name: &str, value: &str) -> Result<(), Error> {
        add_to_technical_zone(hub, &self.target, value, ZONE_RECORD_LIFETIME).await?;
        tracing::info!(record = %self.target, "TXT record published in the technical zone");
        Ok(())
    }

    async fn cleanup(&self, hub: &Hub, _name: &str, value: &str) -> Result<(), Error> {
        hub.store.remove_zone_record(&self.target, value).await?;
        hub.refresh_technical_zone().await;
        Ok(())
    }

    async fn wait_visible(&self, _hub: &Hub, _name: &str, _value: &str) -> Result<(), Error> {
        // The hub is the zone's authority: the record is served once stored
        // and the zone refreshed (replicas poll the store every second).
        Ok(())
    }
}

/// Adds `value` to the TXT values at `name` of the technical zone for
/// `lifetime` seconds and serves it. Every writer into the zone (acme-dns,
/// delegations for httpreq, the relay and managed certificates) comes
/// through here, so a name never holds more than `max_txt_values_per_name`
/// values: beyond it the write is refused (409) and says why, for the
/// answer to one question stays small (a 300-value RRset was a 65 kB
/// answer).
pub async fn add_to_technical_zone(
    hub: &Hub,
    name: &str,
    value: &str,
    lifetime: i64,
) -> Result<(), Error> {
    let Some(zone) = &hub.technical_zone else {
        return Err(Error::new(
            ErrorKind::Conflict,
            "this hub serves no technical zone: configure [dns.technical_zone] to use delegations or acme-dns",
        ));
    };
    let max = zone.max_txt_values();
    let now = now();
    match hub
        .store
        .add_zone_record(name, value, now, now + lifetime, max)
        .await?
    {
        ZoneRecordWrite::Added => {
            hub.refresh_technical_zone().await;
            Ok(())
        }
        ZoneRecordWrite::Full { oldest_expires_at } => {
            tracing::info!(
                record = name,
                max,
                "TXT record refused: the name holds its most values"
            );
            let wait = oldest_expires_at
                .map(|at| format!(" (the oldest expires in {} s)", (at - now).max(1)))
                .unwrap_or_default();
            Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{name} already holds {max} TXT values, the most one name of the technical \
                     zone serves ([dns.technical_zone] max_txt_values_per_name); remove one \
                     (httpreq /cleanup) or wait until one expires{wait}"
                ),
            ))
        }
    }
}

/// The publisher for one name.
pub enum Solver {
    Provider(Box<ProviderPublisher>),
    Zone(ZonePublisher),
}

impl Solver {
    pub async fn publish(&self, hub: &Hub, name: &str, value: &str) -> Result<(), Error> {
        match self {
            Self::Provider(p) => p.publish(hub, name, value).await,
            Self::Zone(z) => z.publish(hub, name, value).await,
        }
    }

    pub async fn cleanup(&self, hub: &Hub, name: &str, value: &str) -> Result<(), Error> {
        match self {
            Self::Provider(p) => p.cleanup(hub, name, value).await,
            Self::Zone(z) => z.cleanup(hub, name, value).await,
        }
    }

    pub async fn wait_visible(&self, hub: &Hub, name: &str, value: &str) -> Result<(), Error> {
        match self {
            Self::Provider(p) => p.wait_visible(hub, name, value).await,
            Self::Zone(z) => z.wait_visible(hub, name, value).await,
        }
    }

    /// What answers for the name, for logs and API answers.
    pub fn describe(&self) -> String {
        match self {
            Self::Provider(p) => format!(
                "zone {} via credential {:?} ({})",
                p.zone.zone, p.credential.name, p.zone.provider
            ),
            Self::Zone(z) => format!("delegation to {}", z.target),
        }
    }
}

/// The error for a name nothing can publish: names the identifier, the zone
/// looked for and the credential checked, and what went wrong.
pub fn cannot_proceed(name: &str, zone: &str, credential: Option<&Credential>, why: &str) -> Error {
    let credential = match credential {
        Some(c) => format!("credential {:?} ({})", c.name, c.kind),
        None => "no credential".to_string(),
    };
    Error::new(
        ErrorKind::Dns,
        format!("{CANNOT_PROCEED}: {name} (zone {zone}, {credential}): {why}"),
    )
}

/// `_acme-challenge.<name>` for an identifier value (a wildcard uses its base).
pub fn challenge_name(identifier: &str) -> String {
    format!(
        "_acme-challenge.{}",
        identifier.strip_prefix("*.").unwrap_or(identifier)
    )
}

/// Picks the publisher for the TXT record `name` of `instance`: a delegation
/// of the name's domain wins (its CNAME leaves no room for a TXT record in
/// the customer's zone), else the longest bound zone.
pub async fn solver_for(hub: &Hub, instance: &Instance, name: &str) -> Result<Solver, Error> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let domain = name.strip_prefix("_acme-challenge.").unwrap_or(&name);
    if let Some(zone) = &hub.technical_zone {
        if let Some(d) = hub
            .store
            .delegations(&instance.id)
            .await?
            .into_iter()
            .find(|d| d.domain == domain)
        {
            return Ok(Solver::Zone(ZonePublisher {
                target: format!("{}.{}", d.label, zone.name()),
            }));
        }
    }
    let zones = hub.store.zones(&instance.id).await?;
    let Some(zone) = crate::dns::credentials::longest_match(&zones, &name).cloned() else {
        return Err(cannot_proceed(
            &name,
            domain,
            None,
            &format!(
                "no zone binding or delegation of instance {:?} covers it; bind its zone \
                 (POST /api/v1/instances/{}/dns-zones) or delegate it (POST .../delegations)",
                instance.name, instance.name
            ),
        ));
    };
    let credential = hub
        .store
        .credential(&instance.id, &zone.credential_id)
        .await?
        .ok_or_else(|| {
            cannot_proceed(&name, &zone.zone, None, "the zone's credential is missing")
        })?;
    let publisher = ProviderPublisher::new(hub, zone, credential)?;
    Ok(Solver::Provider(Box::new(publisher)))
}
