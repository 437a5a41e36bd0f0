//! The technical zone the hub serves itself (`[dns.technical_zone]`): an
//! SOA and NS at its apex, and the TXT records of delegations and acme-dns
//! registrations, loaded from the store so that every replica answers the
//! same. It answers only for its own zone and never recurses.

use std::net::SocketAddr;

use super::memory::MemoryDns;
use crate::config::TechnicalZoneConfig;
use crate::store::Store;

/// The running authoritative server for the technical zone.
pub struct TechnicalZone {
    dns: MemoryDns,
    name: String,
}

impl TechnicalZone {
    /// Binds UDP and TCP on the configured address and serves the apex.
    pub async fn start(config: &TechnicalZoneConfig) -> std::io::Result<Self> {
        let dns = MemoryDns::start(config.listen).await?;
        let name = config.name.trim_end_matches('.').to_ascii_lowercase();
        let primary = config
            .nameservers
            .first()
            .cloned()
            .unwrap_or_else(|| format!("ns.{name}"));
        dns.set_soa(&name, &primary, &format!("hostmaster.{name}"), config.ttl);
        for ns in &config.nameservers {
            dns.add_ns(&name, ns);
        }
        tracing::info!(zone = %name, listen = %dns.addr(), "serving the technical zone");
        Ok(Self { dns, name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it answers (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.dns.addr()
    }

    /// Serves exactly the TXT records the store holds now.
    pub async fn reload(&self, store: &Store) {
        match store.zone_records(crate::util::now()).await {
            Ok(records) => self.dns.replace_txt_under(&self.name, &records),
            Err(e) => {
                tracing::warn!(error = %e, "reloading the technical zone failed; serving the previous records")
            }
        }
    }
}
