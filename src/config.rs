//! Configuration: the TOML file, then environment variables and flags on top,
//! resolved into one typed [`Config`]. Nothing else reads the environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Errors while reading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid setting {field}: {why}")]
    Invalid { field: &'static str, why: String },
}

/// The config file (`--config`). Every field is optional; flags and
/// environment variables override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address the HTTPS listener binds, e.g. `127.0.0.1:8443`.
    pub listen: Option<SocketAddr>,
    /// Where the database, the CA and the admin token live.
    pub data_dir: Option<PathBuf>,
    /// `sqlite://...` or `postgres://...`.
    pub database_url: Option<String>,
    /// Base of every URL the hub hands out; JWS `url` headers are checked against it.
    pub public_url: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<LogFormat>,
    /// Load balancers or proxies (IPs or CIDRs) whose `X-Forwarded-For` says
    /// who the client is; from anyone else the header is ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// File holding the master key (32 bytes, standard base64) when
    /// `ACMEHUB_MASTER_KEY` is unset; default `<data-dir>/master-key`,
    /// created on first start.
    pub master_key_file: Option<PathBuf>,
    #[serde(default)]
    pub validation: ValidationConfig,
    #[serde(default)]
    pub dns: DnsConfig,
    #[serde(default)]
    pub acme: AcmeConfig,
    #[serde(default)]
    pub ca: CaConfig,
    #[serde(default)]
    pub server: ServerConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[validation]`: how the hub checks challenges (the VA's settings).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// DNS servers (`ip` or `ip:port`) for every lookup the hub makes; empty = the system's.
    pub resolvers: Vec<String>,
    /// Port http-01 validation connects to (RFC 8555 §8.3 says 80).
    pub http01_port: u16,
    /// Port tls-alpn-01 validation connects to (RFC 8737 says 443).
    pub tlsalpn01_port: u16,
    /// Whether validation may dial private and loopback addresses, for
    /// instances that do not say (each instance may; only a hub-wide token
    /// may allow). Default true: a fleet hub validates internal hosts.
    /// Link-local (169.254.0.0/16, fe80::/10), unspecified, multicast and
    /// broadcast addresses and the hub's own listeners are never dialed.
    pub allow_private_targets: bool,
    /// Time limit for one validation attempt, in seconds.
    pub attempt_timeout_secs: u64,
    /// How many attempts a challenge gets before it is invalid.
    pub attempts: u32,
    /// Pause between attempts, in milliseconds.
    pub retry_delay_ms: u64,
    /// CAA issuer domain names that authorize this hub (RFC 8659); empty skips CAA checks.
    pub caa_identities: Vec<String>,
    /// How long the answer to a challenge waits for its validation, in
    /// milliseconds, before it says `processing` (0: always at once).
    pub answer_within_ms: u64,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            resolvers: Vec::new(),
            http01_port: 80,
            tlsalpn01_port: 443,
            allow_private_targets: true,
            attempt_timeout_secs: 10,
            attempts: 3,
            retry_delay_ms: 1000,
            caa_identities: vec!["acmehub.local".to_string()],
            answer_within_ms: 1000,
        }
    }
}

impl ValidationConfig {
    /// The resolvers as socket addresses (port 53 when none is given).
    pub fn resolver_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        self.resolvers
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>()
                    .or_else(|_| {
                        s.parse::<std::net::IpAddr>()
                            .map(|ip| SocketAddr::new(ip, 53))
                    })
                    .map_err(|_| ConfigError::Invalid {
                        field: "validation.resolvers",
                        why: format!("{s:?} is not an IP address or IP:port"),
                    })
            })
            .collect()
    }

    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_secs(self.attempt_timeout_secs.max(1))
    }
}

/// `[dns]`: publishing DNS-01 records and the technical zone the hub serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// How long to wait for a published TXT record to show on every
    /// authoritative nameserver, in seconds.
    pub propagation_timeout_secs: u64,
    /// TTL of the TXT records the hub publishes through providers, in seconds.
    pub record_ttl: u32,
    /// Timeout of one provider API call, in seconds.
    pub provider_timeout_secs: u64,
    /// Port the authoritative nameservers of customer zones answer on when
    /// the hub checks them directly (53; tests and labs may differ).
    pub authoritative_port: u16,
    /// The zone the hub serves itself for delegations (CNAME hand-offs).
    pub technical_zone: Option<TechnicalZoneConfig>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            propagation_timeout_secs: 120,
            record_ttl: 60,
            provider_timeout_secs: 30,
            authoritative_port: 53,
            technical_zone: None,
        }
    }
}

/// `[dns.technical_zone]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TechnicalZoneConfig {
    /// The zone's name, e.g. `acme.hub.example`.
    pub name: String,
    /// Where the hub answers for it (UDP and TCP), e.g. `0.0.0.0:53`.
    pub listen: SocketAddr,
    /// The zone's NS names, as delegated in the parent zone.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// TTL of the zone's records, in seconds.
    #[serde(default = "default_zone_ttl")]
    pub ttl: u32,
    /// Most TXT values one name of the zone holds at once (an acme-dns
    /// label, a delegation's target). A wildcard and its base need 2,
    /// parallel orders at several CAs a few more; a write beyond this is
    /// refused (HTTP 409) until a value is removed or expires, so that a
    /// name's answer stays small.
    #[serde(default = "default_max_txt_values_per_name")]
    pub max_txt_values_per_name: usize,
    /// UDP responses per second (and burst) each client subnet (IPv4 /24,
    /// IPv6 /56) gets; beyond it every second response is a truncated one
    /// (TC, so real resolvers retry over TCP) and the rest are dropped.
    /// 0 turns the limit off.
    #[serde(default = "default_udp_responses_per_second")]
    pub udp_responses_per_second: u32,
    /// How long a DNS-over-TCP connection may stay silent (or take to send
    /// one query) before it is closed, in milliseconds (RFC 7766 §6.2.3).
    #[serde(default = "default_tcp_idle_timeout_ms")]
    pub tcp_idle_timeout_ms: u64,
    /// Most DNS-over-TCP connections open at once; more are closed at once.
    #[serde(default = "default_max_tcp_connections")]
    pub max_tcp_connections: usize,
}

impl TechnicalZoneConfig {
    /// The zone `name` served on `listen`, with no NS names and every other
    /// setting at its default.
    pub fn new(name: &str, listen: SocketAddr) -> Self {
        Self {
            name: name.to_string(),
            listen,
            nameservers: Vec::new(),
            ttl: default_zone_ttl(),
            max_txt_values_per_name: default_max_txt_values_per_name(),
            udp_responses_per_second: default_udp_responses_per_second(),
            tcp_idle_timeout_ms: default_tcp_idle_timeout_ms(),
            max_tcp_connections: default_max_tcp_connections(),
        }
    }
}

fn default_zone_ttl() -> u32 {
    60
}

fn default_max_txt_values_per_name() -> usize {
    8
}

fn default_udp_responses_per_second() -> u32 {
    50
}

fn default_tcp_idle_timeout_ms() -> u64 {
    10_000
}

fn default_max_tcp_connections() -> usize {
    128
}

/// `[acme]`: what the directory advertises and how long objects live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeConfig {
    pub terms_of_service: Option<String>,
    pub website: Option<String>,
    /// Lifetime of a nonce, in seconds.
    pub nonce_lifetime_secs: u64,
    /// Lifetime of a pending order and its authorizations, in seconds.
    pub order_lifetime_secs: u64,
    /// Lifetime of a valid authorization, in seconds.
    pub authz_valid_secs: u64,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        Self {
            terms_of_service: None,
            website: None,
            nonce_lifetime_secs: 3600,
            order_lifetime_secs: 7 * 24 * 3600,
            authz_valid_secs: 30 * 24 * 3600,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// `[server]`: what the HTTPS listener grants one client, so that slow,
/// idle or too many connections cannot wedge it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Time a client gets to finish its TLS handshake, in seconds.
    pub handshake_timeout_secs: u64,
    /// Time an HTTP/1.1 client gets to send a request's headers, in
    /// seconds, counted from the request's first byte or from the end of
    /// the previous answer on a kept-alive connection.
    pub header_read_timeout_secs: u64,
    /// Time a request body gets to arrive in full, in seconds, from the
    /// moment its handler starts reading it.
    pub body_read_timeout_secs: u64,
    /// A connection (HTTP/1.1 or HTTP/2) with no request in flight for this
    /// many seconds is closed.
    pub idle_timeout_secs: u64,
    /// Connections served at once; one more is closed as soon as it is
    /// accepted. Each costs up to about 1 MiB (TLS buffers, HTTP/1.1 read
    /// buffer, HTTP/2 flow-control windows) and one file descriptor.
    pub max_connections: usize,
    /// Largest request body outside the ACME routes (the admin API,
    /// acme-dns and httpreq), in bytes; `[acme] max_body_bytes` governs
    /// ACME and the console has its own, smaller, form limits.
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            handshake_timeout_secs: 10,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            idle_timeout_secs: 60,
            // About 1 GiB at the worst case of 1 MiB each: what a 2-core
            // box can spare; a fleet's renewals rarely need more than
            // a few dozen at once.
            max_connections: 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

impl ServerConfig {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let positive = [
            ("server.handshake_timeout_secs", self.handshake_timeout_secs),
            (
                "server.header_read_timeout_secs",
                self.header_read_timeout_secs,
            ),
            ("server.body_read_timeout_secs", self.body_read_timeout_secs),
            ("server.idle_timeout_secs", self.idle_timeout_secs),
            ("server.max_connections", self.max_connections as u64),
            ("server.max_body_bytes", self.max_body_bytes as u64),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    field,
                    why: "must be at least 1".into(),
                });
            }
        }
        // The shutdown waits for every connection's slot at once, and
        // tokio counts those in u32.
        if u32::try_from(self.max_connections).is_err() {
            return Err(ConfigError::Invalid {
                field: "server.max_connections",
                why: format!("must be at most {}", u32::MAX),
            });
        }
        Ok(())
    }
}

/// `[ca]`: the local CA's certificate profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    /// Validity of issued certificates, in days.
    pub leaf_validity_days: u32,
    /// ACME profiles (draft-ietf-acme-profiles) the local CA offers, by
    /// name; an order that names one gets its validity. None by default.
    pub profiles: std::collections::BTreeMap<String, CaProfile>,
}

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            leaf_validity_days: 90,
            profiles: Default::default(),
        }
    }
}

/// `[ca.profiles.NAME]`: one profile of the local CA.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CaProfile {
    /// Shown to clients in the directory.
    pub description: String,
    /// Validity of certificates issued with this profile, in days.
    pub leaf_validity_days: u32,
}

/// Everything a running hub needs, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// Without a trailing slash, e.g. `https://localhost:8443`.
    pub public_url: String,
    pub log_format: LogFormat,
    pub admin_token: Option<String>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<crate::policy::Pattern>,
    /// The master key from `ACMEHUB_MASTER_KEY`, if set.
    pub master_key: Option<String>,
    pub master_key_file: Option<PathBuf>,
    pub validation: ValidationConfig,
    pub dns: DnsConfig,
    pub acme: AcmeConfig,
    pub ca: CaConfig,
    pub server: ServerConfig,
}

/// Values that come from flags or the environment (clap merges the two).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    pub log_format: Option<LogFormat>,
    pub admin_token: Option<String>,
    pub master_key: Option<String>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

impl Config {
    /// Reads the optional config file and applies flags/environment on top.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let file_config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                })?
            }
            None => FileConfig::default(),
        };
        Self::resolve(file_config, overrides)
    }

    pub fn resolve(file: FileConfig, o: Overrides) -> Result<Self, ConfigError> {
        let listen = o
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("constant address parses"));
        let data_dir = o
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./acmehub-data"));
        let database_url = o
            .database_url
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}/acmehub.db", data_dir.display()));
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid {
                field: "database_url",
                why: "must start with sqlite:, postgres:// or postgresql://".into(),
            });
        }
        let public_url = o
            .public_url
            .or(file.public_url)
            .unwrap_or_else(|| format!("https://localhost:{}", listen.port()));
        let public_url = public_url.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&public_url).map_err(|e| ConfigError::Invalid {
            field: "public_url",
            why: e.to_string(),
        })?;
        if parsed.scheme() != "https" && parsed.scheme() != "http" {
            return Err(ConfigError::Invalid {
                field: "public_url",
                why: "must be an https:// URL".into(),
            });
        }
        if parsed.path() != "/" || parsed.query().is_some() {
            return Err(ConfigError::Invalid {
                field: "public_url",
                why: "must be a base URL without a path or query".into(),
            });
        }
        file.validation.resolver_addrs()?;
        file.server.check()?;
        if file.validation.attempts == 0 {
            return Err(ConfigError::Invalid {
                field: "validation.attempts",
                why: "must be at least 1".into(),
            });
        }
        let trusted_proxies = file
            .trusted_proxies
            .iter()
            .map(|p| match crate::policy::Pattern::parse(p) {
                Ok(net @ crate::policy::Pattern::Network { .. }) => Ok(net),
                _ => Err(ConfigError::Invalid {
                    field: "trusted_proxies",
                    why: format!("{p:?} is not an IP address or CIDR network"),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(zone) = &file.dns.technical_zone {
            crate::policy::Identifier::dns(&zone.name).map_err(|e| ConfigError::Invalid {
                field: "dns.technical_zone.name",
                why: e.detail,
            })?;
            if zone.max_txt_values_per_name == 0 {
                return Err(ConfigError::Invalid {
                    field: "dns.technical_zone.max_txt_values_per_name",
                    why: "must be at least 1".into(),
                });
            }
            if zone.max_tcp_connections == 0 {
                return Err(ConfigError::Invalid {
                    field: "dns.technical_zone.max_tcp_connections",
                    why: "must be at least 1".into(),
                });
            }
            if zone.tcp_idle_timeout_ms == 0 {
                return Err(ConfigError::Invalid {
                    field: "dns.technical_zone.tcp_idle_timeout_ms",
                    why: "must be at least 1".into(),
                });
            }
        }
        if file.ca.leaf_validity_days == 0 || file.ca.leaf_validity_days > 398 {
            return Err(ConfigError::Invalid {
                field: "ca.leaf_validity_days",
                why: "must be between 1 and 398".into(),
            });
        }
        for (name, profile) in &file.ca.profiles {
            if !crate::util::is_token(name) {
                return Err(ConfigError::Invalid {
                    field: "ca.profiles",
                    why: format!("{name:?} is not a profile name (letters, digits, '-', '_', '.')"),
                });
            }
            if profile.leaf_validity_days == 0 || profile.leaf_validity_days > 398 {
                return Err(ConfigError::Invalid {
                    field: "ca.profiles",
                    why: format!("{name}: leaf_validity_days must be between 1 and 398"),
                });
            }
        }
        Ok(Self {
            listen,
            data_dir,
            database_url,
            public_url,
            log_format: o.log_format.or(file.log_format).unwrap_or_default(),
            admin_token: o.admin_token.filter(|t| !t.is_empty()),
            trusted_proxies,
            master_key: o.master_key.filter(|k| !k.is_empty()),
            master_key_file: file.master_key_file,
            validation: file.validation,
            dns: file.dns,
            acme: file.acme,
            ca: file.ca,
            server: file.server,
        })
    }

    /// The host part of the public URL (for the listener certificate).
    pub fn public_host(&self) -> Option<String> {
        url::Url::parse(&self.public_url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let c = Config::resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(c.public_url, "https://localhost:8443");
        assert_eq!(c.database_url, "sqlite://./acmehub-data/acmehub.db");
        assert_eq!(c.validation.http01_port, 80);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<FileConfig>("[validation]\nhttp01port = 5002\n").unwrap_err();
        assert!(err.to_string().contains("http01port"));
    }

    #[test]
    fn bad_public_url_is_refused() {
        let o = Overrides {
            public_url: Some("ftp://x/".into()),
            ..Default::default()
        };
        assert!(Config::resolve(FileConfig::default(), o).is_err());
        let o = Overrides {
            public_url: Some("https://hub.example/acme".into()),
            ..Default::default()
        };
        assert!(Config::resolve(FileConfig::default(), o).is_err());
    }

    #[test]
    fn listener_limits_have_defaults_and_refuse_zero() {
        let c = Config::resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(c.server.handshake_timeout(), Duration::from_secs(10));
        assert_eq!(c.server.max_connections, 1024);
        let file: FileConfig =
            toml::from_str("[server]\nidle_timeout_secs = 5\nmax_connections = 8\n").unwrap();
        assert_eq!(file.server.idle_timeout_secs, 5);
        assert_eq!(file.server.header_read_timeout_secs, 10);
        let file: FileConfig = toml::from_str("[server]\nmax_connections = 0\n").unwrap();
        let err = Config::resolve(file, Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("server.max_connections"), "{err}");
    }

    #[test]
    fn resolvers_take_optional_ports() {
        let v = ValidationConfig {
            resolvers: vec!["127.0.0.1:8053".into(), "::1".into()],
            ..Default::default()
        };
        let addrs = v.resolver_addrs().unwrap();
        assert_eq!(addrs[0].port(), 8053);
        assert_eq!(addrs[1].port(), 53);
    }
}
