//! Seeing a published record live: find a zone's authoritative nameservers
//! through the configured resolvers (NS, then their addresses), then ask each
//! of them directly until every one serves the value. No fixed sleeps: poll
//! with backoff until a deadline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::rr::{RData, RecordType};

use crate::validation::resolver::{LookupError, Resolver};

/// Time one query to one authoritative server may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// A zone's authoritative nameserver.
#[derive(Debug, Clone)]
pub struct Nameserver {
    pub name: String,
    pub addrs: Vec<SocketAddr>,
}

/// The zone's NS names and their addresses, through `resolver`. `port` is
/// the port authoritative servers answer on (53 outside tests).
pub async fn nameservers(
    resolver: &Resolver,
    zone: &str,
    port: u16,
) -> Result<Vec<Nameserver>, String> {
    let records = resolver
        .lookup(zone, RecordType::NS)
        .await
        .map_err(|e| format!("no NS records for {zone}: {e}"))?;
    let names: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(ns) => Some(ns.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    if names.is_empty() {
        return Err(format!("no NS records for {zone}"));
    }
    let mut servers = Vec::with_capacity(names.len());
    for name in names {
        let ips = resolver
            .lookup_ips(&name)
            .await
            .map_err(|e| format!("nameserver {name} of {zone} has no address: {e}"))?;
        servers.push(Nameserver {
            addrs: ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
            name,
        });
    }
    Ok(servers)
}

/// The TXT values `server` itself serves at `name` (empty when none).
pub async fn txt_at(server: &Nameserver, name: &str) -> Result<Vec<String>, String> {
    let resolver = Resolver::new(&server.addrs, QUERY_TIMEOUT).map_err(|e| e.detail)?;
    match resolver.lookup(name, RecordType::TXT).await {
        Ok(records) => Ok(records
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect()),
        Err(LookupError::NoRecords { .. } | LookupError::NoSuchName { .. }) => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

/// Waits until every authoritative nameserver of `zone` serves `value` at
/// `name` (or, with `present == false`, none does). Returns the servers
/// checked; the error names the servers that did not catch up in time.
pub async fn wait(
    resolver: &Resolver,
    zone: &str,
    name: &str,
    value: &str,
    present: bool,
    port: u16,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let servers = nameservers(resolver, zone, port).await?;
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(100);
    loop {
        let mut lagging = Vec::new();
        for server in &servers {
            match txt_at(server, name).await {
                Ok(values) if values.iter().any(|v| v == value) == present => {}
                Ok(_) => lagging.push(server.name.clone()),
                Err(e) => lagging.push(format!("{} ({e})", server.name)),
            }
        }
        if lagging.is_empty() {
            return Ok(servers.into_iter().map(|s| s.name).collect());
        }
        if Instant::now() + delay > deadline {
            let state = if present { "serve" } else { "stop serving" };
            return Err(format!(
                "after {} s these nameservers of {zone} did not {state} the TXT record at {name}: {}",
                timeout.as_secs(),
                lagging.join(", ")
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// The closest enclosing zone of `name` (the first ancestor, or the name
/// itself, that has NS records) and its nameservers.
pub async fn zone_of(
    resolver: &Resolver,
    name: &str,
    port: u16,
) -> Result<(String, Vec<Nameserver>), String> {
    let mut current = name.trim_end_matches('.').to_ascii_lowercase();
    loop {
        if let Ok(servers) = nameservers(resolver, &current, port).await {
            return Ok((current, servers));
        }
        match current.split_once('.') {
            Some((_, parent)) if parent.contains('.') => current = parent.to_string(),
            _ => return Err(format!("no zone with NS records encloses {name}")),
        }
    }
}

/// What each authoritative server of `name`'s zone holds as CNAME at `name`:
/// `(server, target or None)`.
pub async fn cname_at(
    resolver: &Resolver,
    name: &str,
    port: u16,
) -> Result<Vec<(String, Option<String>)>, String> {
    let (_, servers) = zone_of(resolver, name, port).await?;
    let mut found = Vec::with_capacity(servers.len());
    for server in servers {
        let direct = Resolver::new(&server.addrs, QUERY_TIMEOUT).map_err(|e| e.detail)?;
        let target = match direct.lookup(name, RecordType::CNAME).await {
            Ok(records) => records.iter().find_map(|r| match &r.data {
                RData::CNAME(c) => Some(c.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
                _ => None,
            }),
            Err(LookupError::NoRecords { .. } | LookupError::NoSuchName { .. }) => None,
            Err(e) => return Err(format!("nameserver {}: {e}", server.name)),
        };
        found.push((server.name, target));
    }
    Ok(found)
}
