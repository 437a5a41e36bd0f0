//! The hub's one DNS resolver: every lookup the hub makes (validation, CAA,
//! delegation checks, finding authoritative servers) goes through the
//! configured `[validation] resolvers`, never the host's, so a lab or a
//! split-horizon network behaves like the Internet. The cache is off:
//! validation must see what the zone says now, not what it said a minute ago.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::rdata::CAA;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

use crate::error::Error;

/// Longest CNAME chain we follow ourselves when a server answers with an
/// alias only (RFC 1034 §3.6.2 chains should be short; loops must end).
const MAX_CNAME_HOPS: usize = 8;

/// A thin wrapper around hickory's resolver with the hub's settings: the
/// configured name servers over UDP and TCP, no cache, no hosts file, names
/// always treated as fully qualified (no search domains).
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

/// Why a lookup found nothing. [`LookupError::is_transient`] says which are
/// worth asking again: NXDOMAIN is a final answer, a missing record may still
/// be propagating, a failed lookup may succeed next time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The name does not exist (NXDOMAIN).
    #[error("{name} does not exist (NXDOMAIN)")]
    NoSuchName { name: String },
    /// The name exists but holds no record of the type asked for.
    #[error("{name} has no {record_type} record")]
    NoRecords {
        name: String,
        record_type: RecordType,
    },
    /// The resolvers did not give an answer (timeout, SERVFAIL, REFUSED, network).
    #[error("looking up {record_type} records at {name} failed: {reason}")]
    Failed {
        name: String,
        record_type: RecordType,
        reason: String,
    },
    /// The string is not a domain name.
    #[error("{name:?} is not a valid DNS name")]
    InvalidName { name: String },
}

impl Resolver {
    /// A resolver that asks `servers` (UDP, then TCP on truncation), or the
    /// system's configured servers when `servers` is empty. `timeout` bounds
    /// each query to one server.
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Result<Resolver, Error> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if servers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| Error::internal("reading the system DNS configuration", e))?
        } else {
            let name_servers = servers
                .iter()
                .map(|addr| {
                    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                    for connection in &mut ns.connections {
                        connection.port = addr.port();
                    }
                    ns
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), name_servers),
                provider,
            )
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = timeout;
        opts.cache_size = 0;
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.negative_max_ttl = Some(Duration::ZERO);
        opts.preserve_intermediates = true;
        opts.use_hosts_file = ResolveHosts::Never;
        let inner = builder
            .build()
            .map_err(|e| Error::internal("building the DNS resolver", e))?;
        Ok(Resolver { inner })
    }

    /// The records of the answer section for `name`/`record_type`, including
    /// any CNAME chain the servers returned.
    pub async fn lookup(
        &self,
        name: &str,
        record_type: RecordType,
    ) -> Result<Vec<Record>, LookupError> {
        let fqdn = fqdn(name)?;
        match self.inner.lookup(fqdn, record_type).await {
            Ok(lookup) => Ok(lookup.answers().to_vec()),
            Err(e) => Err(classify(name, record_type, &e)),
        }
    }

    /// The IPv6 and IPv4 addresses of `name` (AAAA first), following CNAMEs.
    pub async fn lookup_ips(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        let (v6, v4) = tokio::join!(
            self.lookup(name, RecordType::AAAA),
            self.lookup(name, RecordType::A)
        );
        let ips = |records: &[Record]| -> Vec<IpAddr> {
            records
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                    _ => None,
                })
                .collect()
        };
        match (v6, v4) {
            (Ok(v6), Ok(v4)) => {
                let all: Vec<IpAddr> = ips(&v6).into_iter().chain(ips(&v4)).collect();
                if all.is_empty() {
                    Err(LookupError::NoRecords {
                        name: name.to_string(),
                        record_type: RecordType::A,
                    })
                } else {
                    Ok(all)
                }
            }
            // One family is enough to proceed (as CAs do); the other's failure
            // only matters when it is all we have.
            (Ok(found), Err(other)) | (Err(other), Ok(found)) => {
                let found = ips(&found);
                if found.is_empty() {
                    Err(other)
                } else {
                    Ok(found)
                }
            }
            (Err(v6), Err(v4)) => Err(match (&v6, &v4) {
                (LookupError::Failed { .. }, _) => v6,
                (_, LookupError::Failed { .. }) => v4,
                (LookupError::NoSuchName { .. }, LookupError::NoSuchName { .. }) => v4,
                _ => LookupError::NoRecords {
                    name: name.to_string(),
                    record_type: RecordType::A,
                },
            }),
        }
    }

    /// The TXT values at `name`, each record's character-strings concatenated
    /// (RFC 8555 §8.4 / RFC 7208 §3.3), following CNAME chains even when a
    /// server answers with the alias only.
    pub async fn lookup_txt(&self, name: &str) -> Result<Vec<String>, LookupError> {
        let mut current = name.to_string();
        for _ in 0..=MAX_CNAME_HOPS {
            let records = self.lookup(&current, RecordType::TXT).await?;
            let values: Vec<String> = records
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => {
                        let bytes: Vec<u8> = txt
                            .txt_data
                            .iter()
                            .flat_map(|s| s.iter().copied())
                            .collect();
                        Some(String::from_utf8_lossy(&bytes).into_owned())
                    }
                    _ => None,
                })
                .collect();
            if !values.is_empty() {
                return Ok(values);
            }
            match cname_chain_end(&current, &records) {
                Some(target) => current = target,
                None => {
                    return Err(LookupError::NoRecords {
                        name: name.to_string(),
                        record_type: RecordType::TXT,
                    });
                }
            }
        }
        Err(LookupError::Failed {
            name: name.to_string(),
            record_type: RecordType::TXT,
            reason: format!("the CNAME chain is longer than {MAX_CNAME_HOPS} links"),
        })
    }

    /// The CAA records at `name` (after any CNAME), as RFC 8659 §3 asks.
    pub async fn lookup_caa(&self, name: &str) -> Result<Vec<CAA>, LookupError> {
        let records = self.lookup(name, RecordType::CAA).await?;
        Ok(records
            .into_iter()
            .filter_map(|r| match r.data {
                RData::CAA(caa) => Some(caa),
                _ => None,
            })
            .collect())
    }

    /// The underlying hickory resolver, for record types this wrapper does not
    /// cover (NS, SOA). It carries the same settings.
    pub fn hickory(&self) -> &TokioResolver {
        &self.inner
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl LookupError {
    /// Whether asking again later might give a different answer: the
    /// resolvers failed, or the name exists without the record yet (it may
    /// still be propagating). NXDOMAIN is final.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            LookupError::Failed { .. } | LookupError::NoRecords { .. }
        )
    }
}

/// Absolute name, so search domains and `ndots` never apply.
fn fqdn(name: &str) -> Result<Name, LookupError> {
    let trimmed = name.trim_end_matches('.');
    Name::from_ascii(format!("{trimmed}.")).map_err(|_| LookupError::InvalidName {
        name: name.to_string(),
    })
}

fn classify(name: &str, record_type: RecordType, error: &NetError) -> LookupError {
    if error.is_nx_domain() {
        LookupError::NoSuchName {
            name: name.to_string(),
        }
    } else if error.is_no_records_found() {
        LookupError::NoRecords {
            name: name.to_string(),
            record_type,
        }
    } else {
        LookupError::Failed {
            name: name.to_string(),
            record_type,
            reason: error.to_string(),
        }
    }
}

/// Where the CNAME chain starting at `start` ends within `records`, if it
/// starts at all.
fn cname_chain_end(start: &str, records: &[Record]) -> Option<String> {
    let mut current = fqdn(start).ok()?;
    let mut moved = false;
    for _ in 0..=MAX_CNAME_HOPS {
        let next = records.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if r.name.eq_ignore_root(&current) => Some(target.0.clone()),
            _ => None,
        });
        match next {
            Some(target) => {
                current = target;
                moved = true;
            }
            None => break,
        }
    }
    moved.then(|| current.to_ascii())
}
