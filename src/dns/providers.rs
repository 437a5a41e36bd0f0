//! The credential kinds: each DNS provider that the `dns-update` crate
//! implements, with the config (non-secret) and secret fields its client
//! needs, plus `generic` for secrets other integrations use. A kind turns a
//! credential's fields into a `dns_update::DnsUpdater`; nothing here talks
//! to the network, and no error carries a secret value.

use std::time::Duration;

use dns_update::{DnsUpdater, TsigAlgorithm};
use serde_json::{Map, Value};

/// One field of a kind.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub struct FieldSpec {
    pub name: &'static str,
    pub required: bool,
    pub help: &'static str,
}

const fn req(name: &'static str, help: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        required: true,
        help,
    }
}

const fn opt(name: &'static str, help: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        required: false,
        help,
    }
}

/// A credential's fields, checked against its kind, for building a client.
pub struct Fields<'a> {
    config: &'a Map<String, Value>,
    secret: &'a Map<String, Value>,
    pub timeout: Option<Duration>,
}

impl Fields<'_> {
    fn value(&self, name: &str) -> Option<&str> {
        self.secret
            .get(name)
            .or_else(|| self.config.get(name))
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    }

    fn get(&self, name: &str) -> Result<&str, String> {
        self.value(name)
            .ok_or_else(|| format!("{name} is required"))
    }

    fn opt(&self, name: &str) -> Option<&str> {
        self.value(name)
    }
}

type Build = fn(&Fields<'_>) -> Result<DnsUpdater, String>;

/// A credential kind.
pub struct Kind {
    pub name: &'static str,
    pub title: &'static str,
    pub config: &'static [FieldSpec],
    pub secret: &'static [FieldSpec],
    /// `None` for kinds that are not DNS providers (`generic`).
    build: Option<Build>,
}

impl Kind {
    pub fn is_dns_provider(&self) -> bool {
        self.build.is_some()
    }
}

fn err(e: dns_update::Error) -> String {
    // dns-update errors describe the request, never the credential's value.
    match e {
        dns_update::Error::Parse(m)
        | dns_update::Error::Client(m)
        | dns_update::Error::Protocol(m)
        | dns_update::Error::Api(m)
        | dns_update::Error::Response(m)
        | dns_update::Error::Serialize(m)
        | dns_update::Error::Unsupported(m) => m,
        dns_update::Error::Unauthorized => {
            "the provider refused the credential (unauthorized)".into()
        }
        dns_update::Error::NotFound => "the provider has no such zone or record (not found)".into(),
        dns_update::Error::BadRequest => "the provider refused the request (bad request)".into(),
        dns_update::Error::InvalidRegion => "the region is not valid for this provider".into(),
        other => format!("{other:?}"),
    }
}

/// Turns a dns-update error into text fit for an error detail.
pub fn describe(e: dns_update::Error) -> String {
    let text = err(e);
    // A server that refuses a TSIG signature answers with an unsigned TSIG
    // error (RFC 8945 §5.3.2: BADSIG, BADKEY); hickory reports that as a
    // truncated MAC. Say what the server meant.
    if text.contains("truncated HMAC") {
        return "the server refused the TSIG signature (NOTAUTH: BADSIG or BADKEY): \
                check key_name, algorithm and the secret"
            .into();
    }
    text
}

fn tsig_algorithm(name: &str) -> Result<TsigAlgorithm, String> {
    Ok(match name.to_ascii_lowercase().trim_end_matches('.') {
        "hmac-md5" | "hmac-md5.sig-alg.reg.int" => TsigAlgorithm::HmacMd5,
        "hmac-sha1" => TsigAlgorithm::HmacSha1,
        "hmac-sha224" => TsigAlgorithm::HmacSha224,
        "hmac-sha256" => TsigAlgorithm::HmacSha256,
        "hmac-sha384" => TsigAlgorithm::HmacSha384,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        other => {
            return Err(format!(
                "algorithm {other:?} is unknown; use hmac-sha256, hmac-sha384, hmac-sha512, hmac-sha224, hmac-sha1 or hmac-md5"
            ));
        }
    })
}

fn rfc2136(f: &Fields<'_>) -> Result<DnsUpdater, String> {
    use base64::Engine;
    let server = f.get("server")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(f.get("key")?.trim())
        .map_err(|_| "key must be the TSIG secret in standard base64".to_string())?;
    let algorithm = tsig_algorithm(f.opt("algorithm").unwrap_or("hmac-sha256"))?;
    // A bare address means UDP on that port; dns-update also takes tcp:// and udp://.
    DnsUpdater::new_rfc2136_tsig(server, f.get("key_name")?, key, algorithm)
        .map_err(|e| format!("server {server:?} or key_name is invalid: {}", err(e)))
}

fn route53(f: &Fields<'_>) -> Result<DnsUpdater, String> {
    DnsUpdater::new_route53(dns_update::providers::route53::Route53Config {
        access_key_id: f.get("access_key_id")?.into(),
        secret_access_key: f.get("secret_access_key")?.into(),
        session_token: f.opt("session_token").map(Into::into),
        region: f.opt("region").map(Into::into),
        hosted_zone_id: f.opt("hosted_zone_id").map(Into::into),
        private_zone_only: None,
        endpoint: f.opt("endpoint").map(Into::into),
    })
    .map_err(err)
}

fn ovh(f: &Fields<'_>) -> Result<DnsUpdater, String> {
    use dns_update::providers::ovh::OvhEndpoint;
    let endpoint = match f.opt("endpoint").unwrap_or("ovh-eu") {
        "ovh-eu" => OvhEndpoint::OvhEu,
        "ovh-us" => OvhEndpoint::OvhUs,
        "ovh-ca" => OvhEndpoint::OvhCa,
        "kimsufi-eu" => OvhEndpoint::KimsufiEu,
        "kimsufi-ca" => OvhEndpoint::KimsufiCa,
        "soyoustart-eu" => OvhEndpoint::SoyoustartEu,
        "soyoustart-ca" => OvhEndpoint::SoyoustartCa,
        other => {
            return Err(format!(
                "endpoint {other:?} is unknown; use ovh-eu, ovh-us, ovh-ca, kimsufi-eu, kimsufi-ca, soyoustart-eu or soyoustart-ca"
            ));
        }
    };
    DnsUpdater::new_ovh(
        f.get("application_key")?,
        f.get("application_secret")?,
        f.get("consumer_key")?,
        endpoint,
        f.timeout,
    )
    .map_err(err)
}

/// Every kind, in the order a console lists them.
pub static KINDS: &[Kind] = &[
    Kind {
        name: "rfc2136",
        title: "RFC 2136 dynamic update with TSIG (BIND, Knot, PowerDNS, Windows DNS)",
        config: &[
            req(
                "server",
                "primary server: IP:port, udp://IP:port or tcp://IP:port",
            ),
            req("key_name", "TSIG key name"),
            opt(
                "algorithm",
                "hmac-sha256 (default), hmac-sha384, hmac-sha512, ...",
            ),
        ],
        secret: &[req("key", "TSIG secret, standard base64")],
        build: Some(rfc2136),
    },
    Kind {
        name: "cloudflare",
        title: "Cloudflare",
        config: &[],
        secret: &[req("api_token", "API token with Zone.DNS edit")],
        build: Some(|f| DnsUpdater::new_cloudflare(f.get("api_token")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "route53",
        title: "Amazon Route 53",
        config: &[
            req("access_key_id", "IAM access key id"),
            opt("region", "AWS region"),
            opt(
                "hosted_zone_id",
                "hosted zone id (found by name when absent)",
            ),
            opt("endpoint", "API endpoint override"),
        ],
        secret: &[
            req("secret_access_key", "IAM secret access key"),
            opt("session_token", "STS session token"),
        ],
        build: Some(route53),
    },
    Kind {
        name: "digitalocean",
        title: "DigitalOcean",
        config: &[],
        secret: &[req("api_token", "personal access token")],
        build: Some(|f| DnsUpdater::new_digitalocean(f.get("api_token")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "desec",
        title: "deSEC",
        config: &[],
        secret: &[req("api_token", "token")],
        build: Some(|f| DnsUpdater::new_desec(f.get("api_token")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "ovh",
        title: "OVHcloud",
        config: &[
            req("application_key", "application key"),
            opt(
                "endpoint",
                "ovh-eu (default), ovh-us, ovh-ca, kimsufi-eu, ...",
            ),
        ],
        secret: &[
            req("application_secret", "application secret"),
            req("consumer_key", "consumer key"),
        ],
        build: Some(ovh),
    },
    Kind {
        name: "powerdns",
        title: "PowerDNS API",
        config: &[
            opt("endpoint", "API base URL, e.g. http://pdns:8081"),
            opt("server_name", "server id (default localhost)"),
        ],
        secret: &[req("api_key", "X-API-Key")],
        build: Some(|f| {
            DnsUpdater::new_pdns(
                f.get("api_key")?,
                f.opt("endpoint"),
                f.opt("server_name"),
                f.timeout,
            )
            .map_err(err)
        }),
    },
    Kind {
        name: "hetzner",
        title: "Hetzner DNS",
        config: &[],
        secret: &[req("api_token", "DNS API token")],
        build: Some(|f| DnsUpdater::new_hetzner(f.get("api_token")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "linode",
        title: "Linode (Akamai)",
        config: &[],
        secret: &[req("api_token", "personal access token")],
        build: Some(|f| DnsUpdater::new_linode(f.get("api_token")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "vultr",
        title: "Vultr",
        config: &[],
        secret: &[req("api_key", "API key")],
        build: Some(|f| DnsUpdater::new_vultr(f.get("api_key")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "gandi",
        title: "Gandi LiveDNS (v5)",
        config: &[],
        secret: &[req("api_token", "personal access token")],
        build: Some(|f| DnsUpdater::new_gandiv5(f.get("api_token")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "godaddy",
        title: "GoDaddy",
        config: &[req("api_key", "API key")],
        secret: &[req("api_secret", "API secret")],
        build: Some(|f| {
            DnsUpdater::new_godaddy(f.get("api_key")?, f.get("api_secret")?, f.timeout).map_err(err)
        }),
    },
    Kind {
        name: "dnsimple",
        title: "DNSimple",
        config: &[req("account_id", "account id")],
        secret: &[req("api_token", "API token")],
        build: Some(|f| {
            DnsUpdater::new_dnsimple(f.get("api_token")?, f.get("account_id")?, f.timeout)
                .map_err(err)
        }),
    },
    Kind {
        name: "porkbun",
        title: "Porkbun",
        config: &[req("api_key", "API key")],
        secret: &[req("secret_api_key", "secret API key")],
        build: Some(|f| {
            DnsUpdater::new_porkbun(f.get("api_key")?, f.get("secret_api_key")?, f.timeout)
                .map_err(err)
        }),
    },
    Kind {
        name: "bunny",
        title: "Bunny DNS",
        config: &[],
        secret: &[req("api_key", "API key")],
        build: Some(|f| DnsUpdater::new_bunny(f.get("api_key")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "scaleway",
        title: "Scaleway",
        config: &[],
        secret: &[req("api_token", "secret key")],
        build: Some(|f| DnsUpdater::new_scaleway(f.get("api_token")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "ionos",
        title: "IONOS",
        config: &[],
        secret: &[req("api_key", "prefix.secret API key")],
        build: Some(|f| DnsUpdater::new_ionos(f.get("api_key")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "netlify",
        title: "Netlify",
        config: &[],
        secret: &[req("api_token", "personal access token")],
        build: Some(|f| DnsUpdater::new_netlify(f.get("api_token")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "vercel",
        title: "Vercel",
        config: &[opt("team_id", "team id")],
        secret: &[req("api_token", "access token")],
        build: Some(|f| {
            DnsUpdater::new_vercel(f.get("api_token")?, f.opt("team_id"), f.timeout).map_err(err)
        }),
    },
    Kind {
        name: "ns1",
        title: "NS1 (IBM)",
        config: &[],
        secret: &[req("api_key", "API key")],
        build: Some(|f| DnsUpdater::new_ns1(f.get("api_key")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "gcore",
        title: "Gcore",
        config: &[],
        secret: &[req("api_token", "permanent API token")],
        build: Some(|f| DnsUpdater::new_gcore(f.get("api_token")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "exoscale",
        title: "Exoscale",
        config: &[req("api_key", "API key")],
        secret: &[req("api_secret", "API secret")],
        build: Some(|f| {
            DnsUpdater::new_exoscale(f.get("api_key")?, f.get("api_secret")?, f.timeout)
                .map_err(err)
        }),
    },
    Kind {
        name: "constellix",
        title: "Constellix",
        config: &[req("api_key", "API key")],
        secret: &[req("secret_key", "secret key")],
        build: Some(|f| {
            DnsUpdater::new_constellix(f.get("api_key")?, f.get("secret_key")?, f.timeout)
                .map_err(err)
        }),
    },
    Kind {
        name: "dnsmadeeasy",
        title: "DNS Made Easy",
        config: &[req("api_key", "API key")],
        secret: &[req("api_secret", "API secret")],
        build: Some(|f| {
            DnsUpdater::new_dnsmadeeasy(f.get("api_key")?, f.get("api_secret")?, f.timeout)
                .map_err(err)
        }),
    },
    Kind {
        name: "namedotcom",
        title: "Name.com",
        config: &[req("username", "user name")],
        secret: &[req("api_token", "API token")],
        build: Some(|f| {
            DnsUpdater::new_namedotcom(f.get("username")?, f.get("api_token")?, f.timeout)
                .map_err(err)
        }),
    },
    Kind {
        name: "namesilo",
        title: "NameSilo",
        config: &[],
        secret: &[req("api_key", "API key")],
        build: Some(|f| DnsUpdater::new_namesilo(f.get("api_key")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "luadns",
        title: "LuaDNS",
        config: &[req("username", "account e-mail")],
        secret: &[req("api_token", "API token")],
        build: Some(|f| {
            DnsUpdater::new_luadns(f.get("username")?, f.get("api_token")?, f.timeout).map_err(err)
        }),
    },
    Kind {
        name: "infomaniak",
        title: "Infomaniak",
        config: &[],
        secret: &[req("access_token", "API token")],
        build: Some(|f| DnsUpdater::new_infomaniak(f.get("access_token")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "hostingde",
        title: "hosting.de",
        config: &[],
        secret: &[req("api_key", "API key")],
        build: Some(|f| DnsUpdater::new_hostingde(f.get("api_key")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "domeneshop",
        title: "Domeneshop",
        config: &[req("api_token", "API token")],
        secret: &[req("api_secret", "API secret")],
        build: Some(|f| {
            DnsUpdater::new_domeneshop(f.get("api_token")?, f.get("api_secret")?, f.timeout)
                .map_err(err)
        }),
    },
    Kind {
        name: "netcup",
        title: "netcup",
        config: &[req("customer_number", "customer number")],
        secret: &[
            req("api_key", "API key"),
            req("api_password", "API password"),
        ],
        build: Some(|f| {
            DnsUpdater::new_netcup(
                f.get("customer_number")?,
                f.get("api_key")?,
                f.get("api_password")?,
                f.timeout,
            )
            .map_err(err)
        }),
    },
    Kind {
        name: "glesys",
        title: "GleSYS",
        config: &[req("api_user", "API user")],
        secret: &[req("api_key", "API key")],
        build: Some(|f| {
            DnsUpdater::new_glesys(f.get("api_user")?, f.get("api_key")?, f.timeout).map_err(err)
        }),
    },
    Kind {
        name: "mythicbeasts",
        title: "Mythic Beasts",
        config: &[req("username", "API key id")],
        secret: &[req("password", "API key secret")],
        build: Some(|f| {
            DnsUpdater::new_mythicbeasts(f.get("username")?, f.get("password")?, f.timeout)
                .map_err(err)
        }),
    },
    Kind {
        name: "easydns",
        title: "easyDNS",
        config: &[req("token", "API token")],
        secret: &[req("key", "API key")],
        build: Some(|f| {
            DnsUpdater::new_easydns(f.get("token")?, f.get("key")?, f.timeout).map_err(err)
        }),
    },
    Kind {
        name: "dreamhost",
        title: "DreamHost",
        config: &[],
        secret: &[req("api_key", "API key")],
        build: Some(|f| DnsUpdater::new_dreamhost(f.get("api_key")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "arvancloud",
        title: "ArvanCloud",
        config: &[],
        secret: &[req("api_key", "API key")],
        build: Some(|f| DnsUpdater::new_arvancloud(f.get("api_key")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "safedns",
        title: "ANS SafeDNS",
        config: &[],
        secret: &[req("api_token", "API token")],
        build: Some(|f| DnsUpdater::new_safedns(f.get("api_token")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "simplycom",
        title: "Simply.com",
        config: &[req("account_name", "account name")],
        secret: &[req("api_key", "API key")],
        build: Some(|f| {
            DnsUpdater::new_simplycom(f.get("account_name")?, f.get("api_key")?, f.timeout)
                .map_err(err)
        }),
    },
    Kind {
        name: "plesk",
        title: "Plesk",
        config: &[req("base_url", "https://plesk.example:8443")],
        secret: &[req("api_key", "API key")],
        build: Some(|f| {
            DnsUpdater::new_plesk(f.get("base_url")?, f.get("api_key")?, f.timeout).map_err(err)
        }),
    },
    Kind {
        name: "cpanel",
        title: "cPanel",
        config: &[
            req("base_url", "https://cpanel.example:2083"),
            req("username", "user"),
        ],
        secret: &[req("api_token", "API token")],
        build: Some(|f| {
            DnsUpdater::new_cpanel(
                f.get("base_url")?,
                f.get("username")?,
                f.get("api_token")?,
                f.timeout,
            )
            .map_err(err)
        }),
    },
    Kind {
        name: "hostinger",
        title: "Hostinger",
        config: &[],
        secret: &[req("api_token", "API token")],
        build: Some(|f| DnsUpdater::new_hostinger(f.get("api_token")?, f.timeout).map_err(err)),
    },
    Kind {
        name: "spaceship",
        title: "Spaceship",
        config: &[req("api_key", "API key")],
        secret: &[req("api_secret", "API secret")],
        build: Some(|f| {
            DnsUpdater::new_spaceship(f.get("api_key")?, f.get("api_secret")?, f.timeout)
                .map_err(err)
        }),
    },
    Kind {
        name: "websupport",
        title: "Websupport",
        config: &[req("api_key", "API key")],
        secret: &[req("secret", "API secret")],
        build: Some(|f| {
            DnsUpdater::new_websupport(f.get("api_key")?, f.get("secret")?, f.timeout).map_err(err)
        }),
    },
    Kind {
        name: "zoneeu",
        title: "Zone.eu",
        config: &[req("username", "user name")],
        secret: &[req("api_key", "API key")],
        build: Some(|f| {
            DnsUpdater::new_zoneeu(f.get("username")?, f.get("api_key")?, f.timeout).map_err(err)
        }),
    },
    Kind {
        name: "generic",
        title: "Generic secret (username/password or token pairs for other integrations)",
        config: &[opt("username", "user name"), opt("url", "where it is used")],
        secret: &[
            opt("password", "password"),
            opt("token", "token"),
            opt("token_secret", "second half of a token pair"),
        ],
        build: None,
    },
];

/// The kind named `name`.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// A field error: `(field path, why)`.
pub type FieldError = (String, String);

fn check_object(section: &str, value: &Value, specs: &[FieldSpec]) -> Result<(), FieldError> {
    let Some(map) = value.as_object() else {
        return Err((
            section.to_string(),
            format!("{section} must be a JSON object"),
        ));
    };
    for (key, v) in map {
        if !specs.iter().any(|s| s.name == key) {
            let known: Vec<&str> = specs.iter().map(|s| s.name).collect();
            return Err((
                format!("{section}.{key}"),
                format!(
                    "{section}.{key} is not a field of this kind; its {section} fields are [{}]",
                    known.join(", ")
                ),
            ));
        }
        if !v.is_string() {
            return Err((
                format!("{section}.{key}"),
                format!("{section}.{key} must be a string"),
            ));
        }
    }
    for spec in specs.iter().filter(|s| s.required) {
        if map
            .get(spec.name)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err((
                format!("{section}.{}", spec.name),
                format!("{section}.{} is required ({})", spec.name, spec.help),
            ));
        }
    }
    Ok(())
}

/// Checks a credential's config and secret against its kind and, for DNS
/// providers, that a client can be built from them. Errors name the field,
/// never its value.
pub fn validate(kind: &Kind, config: &Value, secret: &Value) -> Result<(), FieldError> {
    check_object("config", config, kind.config)?;
    check_object("secret", secret, kind.secret)?;
    if kind.build.is_some() {
        client(kind, config, secret, None).map_err(|why| ("config".to_string(), why))?;
    }
    Ok(())
}

/// A provider client for a credential's fields.
pub fn client(
    kind: &Kind,
    config: &Value,
    secret: &Value,
    timeout: Option<Duration>,
) -> Result<DnsUpdater, String> {
    let empty = Map::new();
    let fields = Fields {
        config: config.as_object().unwrap_or(&empty),
        secret: secret.as_object().unwrap_or(&empty),
        timeout,
    };
    let build = kind
        .build
        .ok_or_else(|| format!("a {} credential is not a DNS provider", kind.name))?;
    build(&fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_are_unique_and_named_like_slugs() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
        assert!(kind("rfc2136").unwrap().is_dns_provider());
        assert!(!kind("generic").unwrap().is_dns_provider());
        assert!(kind("nope").is_none());
    }

    #[test]
    fn fields_are_checked_by_name_without_echoing_values() {
        let k = kind("rfc2136").unwrap();
        let config = json!({"server": "127.0.0.1:53", "key_name": "hub-key"});
        let good = json!({"key": "c2VjcmV0LXRzaWcta2V5LTEyMzQ="});
        assert!(validate(k, &config, &good).is_ok());
        let (field, _) = validate(k, &config, &json!({})).unwrap_err();
        assert_eq!(field, "secret.key");
        let (field, why) = validate(k, &config, &json!({"key": "not base64 at all!"})).unwrap_err();
        assert_eq!(field, "config");
        assert!(!why.contains("not base64 at all"), "{why}");
        let (field, _) = validate(
            k,
            &json!({"server": "x", "key_name": "k", "color": "red"}),
            &good,
        )
        .unwrap_err();
        assert_eq!(field, "config.color");
        let (field, _) = validate(
            k,
            &json!({"server": "127.0.0.1:53", "key_name": "k", "algorithm": "rot13"}),
            &good,
        )
        .unwrap_err();
        assert_eq!(field, "config");
        let (field, _) = validate(
            kind("cloudflare").unwrap(),
            &json!({}),
            &json!({"api_token": 5}),
        )
        .unwrap_err();
        assert_eq!(field, "secret.api_token");
        assert!(validate(kind("generic").unwrap(), &json!({}), &json!({"token": "t"})).is_ok());
    }
}
