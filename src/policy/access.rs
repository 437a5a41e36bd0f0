//! Access-key policies: which identifiers the accounts bound to an access key
//! may order, and whether the hub asks them to prove control (DESIGN:
//! *access key*). Patterns are parsed once, at the edge, into [`Pattern`]s.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Identifier, IdentifierKind};

/// How the accounts of an access key get their authorizations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ValidationMode {
    /// The client proves control with a challenge, as at any CA.
    Challenge,
    /// Authorizations are valid at once: the policy vouches for them.
    PreAuthorized,
}

impl ValidationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Challenge => "challenge",
            Self::PreAuthorized => "pre-authorized",
        }
    }
}

impl FromStr for ValidationMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "challenge" => Ok(Self::Challenge),
            "pre-authorized" => Ok(Self::PreAuthorized),
            other => Err(format!(
                "{other:?} is not a validation mode; use \"challenge\" or \"pre-authorized\""
            )),
        }
    }
}

/// One allowed-identifier rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `api.example.org`: that name only.
    Exact(String),
    /// `*.example.com`: any name strictly under `example.com` (and, where
    /// wildcards are allowed, wildcard names at or under it).
    Subtree(String),
    /// `10.0.0.0/8` or a single address: IP identifiers inside the network.
    Network { addr: IpAddr, prefix: u8 },
}

impl Pattern {
    /// A network as acme-dns's `allowfrom` (and Go's `ParseCIDR`) reads it:
    /// `192.0.2.0/24`, or one address; host bits are cleared, not refused
    /// (acme-dns's own example is `192.168.100.1/24`).
    pub fn parse_network(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let cleared = match text.split_once('/') {
            Some((addr, prefix)) => {
                let addr: IpAddr = addr
                    .parse()
                    .map_err(|_| format!("{text:?}: the network address is not an IP address"))?;
                let max = if addr.to_canonical().is_ipv4() {
                    32
                } else {
                    128
                };
                let prefix: u8 = prefix
                    .parse()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?;
                format!("{}/{prefix}", mask(addr.to_canonical(), prefix))
            }
            None => text.to_string(),
        };
        match Self::parse(&cleared)? {
            net @ Self::Network { .. } => Ok(net),
            _ => Err(format!("{text:?} is not an IP network (CIDR) or address")),
        }
    }

    /// Parses a rule. DNS names are normalized like identifiers: lowercase,
    /// no trailing dot, and Unicode names become A-labels (IDNA, UTS #46).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("a pattern must not be empty".into());
        }
        if let Some((addr, prefix)) = text.split_once('/') {
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("{text:?}: the network address is not an IP address"))?;
            if addr.to_canonical() != addr {
                return Err(format!("{text:?}: write IPv4 networks in IPv4 form"));
            }
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix: u8 = prefix
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?;
            if mask(addr, prefix) != addr {
                return Err(format!(
                    "{text:?}: host bits are set; the network is {}/{prefix}",
                    mask(addr, prefix)
                ));
            }
            return Ok(Self::Network { addr, prefix });
        }
        if let Ok(addr) = text.parse::<IpAddr>() {
            let addr = addr.to_canonical();
            let prefix = if addr.is_ipv4() { 32 } else { 128 };
            return Ok(Self::Network { addr, prefix });
        }
        let ascii = idna::domain_to_ascii(text)
            .map_err(|_| format!("{text:?} is not a valid DNS name or IDNA name"))?;
        let id = Identifier::dns(&ascii).map_err(|e| e.detail)?;
        Ok(match id.value.strip_prefix("*.") {
            Some(base) => Self::Subtree(base.to_string()),
            None => Self::Exact(id.value),
        })
    }

    /// Whether this rule allows `identifier` (wildcard permission aside).
    pub fn allows(&self, identifier: &Identifier) -> bool {
        match (self, identifier.kind) {
            (Self::Exact(name), IdentifierKind::Dns) => *name == identifier.value,
            (Self::Subtree(base), IdentifierKind::Dns) => {
                let under = |name: &str| {
                    name.strip_suffix(base.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
                };
                match identifier.value.strip_prefix("*.") {
                    // `*.x.example.com` covers names under x.example.com: allowed
                    // when x.example.com is example.com itself or under it.
                    Some(wild_base) => wild_base == base || under(wild_base),
                    None => under(&identifier.value),
                }
            }
            (Self::Network { addr, prefix }, IdentifierKind::Ip) => identifier
                .ip_addr()
                .is_some_and(|ip| ip.is_ipv4() == addr.is_ipv4() && mask(ip, *prefix) == *addr),
            _ => false,
        }
    }

    /// Whether every identifier this rule allows, `other` allows too: the
    /// rule is no wider than `other`.
    pub fn within(&self, other: &Pattern) -> bool {
        match (self, other) {
            (Self::Exact(name), _) => other.allows(&Identifier {
                kind: super::IdentifierKind::Dns,
                value: name.clone(),
            }),
            // `*.shop.example.com` allows wildcard names at shop.example.com,
            // which `*.example.com` allows as well.
            (Self::Subtree(base), Self::Subtree(_)) => other.allows(&Identifier {
                kind: super::IdentifierKind::Dns,
                value: format!("*.{base}"),
            }),
            (
                Self::Network { addr, prefix },
                Self::Network {
                    addr: outer,
                    prefix: outer_prefix,
                },
            ) => {
                addr.is_ipv4() == outer.is_ipv4()
                    && prefix >= outer_prefix
                    && mask(*addr, *outer_prefix) == *outer
            }
            _ => false,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Subtree(base) => write!(f, "*.{base}"),
            Self::Network { addr, prefix } => write!(f, "{addr}/{prefix}"),
        }
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// The rules of one access key.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    /// The access key's name, for error details.
    pub key_name: String,
    pub patterns: Vec<Pattern>,
    pub allow_wildcard: bool,
    pub validation: ValidationMode,
}

impl AccessPolicy {
    /// Parses stored or requested pattern texts.
    pub fn parse_patterns(texts: &[String]) -> Result<Vec<Pattern>, String> {
        if texts.is_empty() {
            return Err("at least one allowed identifier pattern is required".into());
        }
        texts.iter().map(|t| Pattern::parse(t)).collect()
    }

    /// Why `identifier` is refused, or `None` when the policy allows it.
    pub fn refusal(&self, identifier: &Identifier) -> Option<String> {
        if identifier.is_wildcard() && !self.allow_wildcard {
            return Some(format!(
                "{} is a wildcard name, and access key {:?} does not allow wildcards",
                identifier.value, self.key_name
            ));
        }
        if self.patterns.iter().any(|p| p.allows(identifier)) {
            return None;
        }
        let rules: Vec<String> = self.patterns.iter().map(|p| p.to_string()).collect();
        Some(format!(
            "{} is not allowed by access key {:?}: it matches none of its patterns [{}]",
            identifier.value,
            self.key_name,
            rules.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_is_within_another_only_when_it_allows_nothing_more() {
        let p = |t: &str| Pattern::parse(t).unwrap();
        for (inner, outer) in [
            ("a.example.com", "a.example.com"),
            ("a.example.com", "*.example.com"),
            ("*.shop.example.com", "*.example.com"),
            ("*.example.com", "*.example.com"),
            ("10.1.0.0/16", "10.0.0.0/8"),
            ("10.1.2.3", "10.0.0.0/8"),
            ("2001:db8::/48", "2001:db8::/32"),
        ] {
            assert!(p(inner).within(&p(outer)), "{inner} within {outer}");
        }
        for (inner, outer) in [
            ("example.com", "*.example.com"),
            ("*.example.com", "a.example.com"),
            ("*.example.com", "*.shop.example.com"),
            ("*.other.com", "*.example.com"),
            ("10.0.0.0/7", "10.0.0.0/8"),
            ("11.0.0.0/8", "10.0.0.0/8"),
            ("10.0.0.1", "a.example.com"),
            ("::/0", "0.0.0.0/0"),
        ] {
            assert!(!p(inner).within(&p(outer)), "{inner} not within {outer}");
        }
    }

    fn id(text: &str) -> Identifier {
        if text.parse::<IpAddr>().is_ok() {
            Identifier::ip(text).unwrap()
        } else {
            Identifier::dns(text).unwrap()
        }
    }

    #[test]
    fn patterns_against_identifiers() {
        // (pattern, identifier, allowed) — wildcard permission is separate.
        let table = [
            ("example.com", "example.com", true),
            ("example.com", "www.example.com", false),
            ("Example.COM.", "example.com", true),
            ("example.com", "*.example.com", false),
            ("*.example.com", "www.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "badexample.com", false),
            ("*.example.com", "example.com.evil.test", false),
            ("*.example.com", "*.example.com", true),
            ("*.example.com", "*.a.example.com", true),
            ("*.a.example.com", "*.example.com", false),
            ("*.EXAMPLE.com.", "WWW.example.com", true),
            ("bücher.de", "xn--bcher-kva.de", true),
            ("*.bücher.de", "shop.xn--bcher-kva.de", true),
            ("xn--bcher-kva.de", "xn--bcher-kva.de", true),
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.0.0.1", "10.0.0.1", true),
            ("10.0.0.1", "10.0.0.2", false),
            ("0.0.0.0/0", "192.0.2.1", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("2001:db8::/32", "2001:db8:1::5", true),
            ("2001:db8::/32", "2001:db9::5", false),
            ("10.0.0.0/8", "ten.example.com", false),
            ("*.example.com", "10.0.0.1", false),
        ];
        for (pattern, identifier, want) in table {
            let p = Pattern::parse(pattern).unwrap();
            assert_eq!(
                p.allows(&id(identifier)),
                want,
                "pattern {pattern:?} vs {identifier:?}"
            );
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for bad in [
            "",
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/x",
            "a..b.example.com",
            "*.*.example.com",
            "a.*.example.com",
            "exa mple.com",
            "com",
            "bad_name.example.com",
            "::ffff:10.0.0.0/104",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(AccessPolicy::parse_patterns(&[]).is_err());
    }

    #[test]
    fn refusals_name_the_rule() {
        let policy = AccessPolicy {
            key_name: "corp".into(),
            patterns: AccessPolicy::parse_patterns(&["*.corp.test".into()]).unwrap(),
            allow_wildcard: false,
            validation: ValidationMode::PreAuthorized,
        };
        assert_eq!(policy.refusal(&id("a.corp.test")), None);
        let other = policy.refusal(&id("a.other.test")).unwrap();
        assert!(other.contains("a.other.test") && other.contains("*.corp.test"));
        let wild = policy.refusal(&id("*.corp.test")).unwrap();
        assert!(wild.contains("does not allow wildcards"));
        let allowing = AccessPolicy {
            allow_wildcard: true,
            ..policy
        };
        assert_eq!(allowing.refusal(&id("*.corp.test")), None);
    }
}
