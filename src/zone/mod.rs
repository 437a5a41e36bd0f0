//! The technical zone the hub serves itself (`[dns.technical_zone]`): an
//! SOA and NS at its apex, and the TXT records of delegations and acme-dns
//! registrations, loaded from the store so that every replica answers the
//! same. It answers only for its own zone and never recurses. The server
//! is [`authoritative`] (UDP and TCP; tests also use it as "the internet's
//! DNS"), rate-limited per client subnet over UDP by [`ratelimit`].

pub mod authoritative;
pub mod ratelimit;

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::TechnicalZoneConfig;
use crate::store::Store;
use authoritative::{AuthoritativeServer, ServerOptions};

/// The running authoritative server for the technical zone.
pub struct TechnicalZone {
    dns: AuthoritativeServer,
    name: String,
    /// Most TXT values served at one name (`max_txt_values_per_name`).
    max_txt_values: usize,
}

impl TechnicalZone {
    /// Binds UDP and TCP on the configured address and serves the apex.
    pub async fn start(config: &TechnicalZoneConfig) -> std::io::Result<Self> {
        let name = config.name.trim_end_matches('.').to_ascii_lowercase();
        let options = ServerOptions {
            zones: vec![name.clone()],
            udp_responses_per_second: config.udp_responses_per_second,
            tcp_idle_timeout: Duration::from_millis(config.tcp_idle_timeout_ms.max(1)),
            max_tcp_connections: config.max_tcp_connections.max(1),
        };
        let dns = AuthoritativeServer::start_with(config.listen, options).await?;
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
        Ok(Self {
            dns,
            name,
            max_txt_values: config.max_txt_values_per_name.max(1),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it answers (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.dns.addr()
    }

    /// Most TXT values one name holds; writers are refused beyond it.
    pub fn max_txt_values(&self) -> usize {
        self.max_txt_values
    }

    /// Serves the TXT records the store holds now: at most
    /// `max_txt_values` newest ones a name, in case the store holds more
    /// (written before the cap, or by a replica with a larger one).
    pub async fn reload(&self, store: &Store) {
        match store.zone_records(crate::util::now()).await {
            Ok(records) => self
                .dns
                .replace_txt_under(&self.name, &newest_per_name(records, self.max_txt_values)),
            Err(e) => {
                tracing::warn!(error = %e, "reloading the technical zone failed; serving the previous records")
            }
        }
    }
}

/// Keeps the last `max` records of each name; `records` come grouped by
/// name, oldest first (as [`Store::zone_records`] returns them).
fn newest_per_name(records: Vec<(String, String)>, max: usize) -> Vec<(String, String)> {
    let mut kept: Vec<(String, String)> = Vec::with_capacity(records.len());
    let mut run_start = 0;
    for record in records {
        if kept
            .get(run_start)
            .is_some_and(|(name, _)| *name != record.0)
        {
            run_start = kept.len();
        }
        if kept.len() - run_start == max {
            kept.remove(run_start);
        }
        kept.push(record);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_values_of_a_name_are_served() {
        let records = ["a1", "a2", "a3", "b1", "c1", "c2"]
            .iter()
            .map(|v| (v[..1].to_string(), v.to_string()))
            .collect();
        let kept: Vec<String> = newest_per_name(records, 2)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(kept, ["a2", "a3", "b1", "c1", "c2"]);
    }
}
