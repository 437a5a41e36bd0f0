//! ACME identifiers (RFC 8555 §9.7.7 `dns`, RFC 8738 `ip`), parsed strictly at
//! the edge so the rest of the hub only ever sees normalized values.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};

/// The identifier types we issue for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentifierKind {
    Dns,
    Ip,
}

impl IdentifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Ip => "ip",
        }
    }
}

impl FromStr for IdentifierKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "dns" => Ok(Self::Dns),
            "ip" => Ok(Self::Ip),
            other => Err(Error::new(
                ErrorKind::UnsupportedIdentifier,
                format!("identifier type {other:?} is not supported; use \"dns\" or \"ip\""),
            )),
        }
    }
}

/// A normalized identifier: DNS names lowercase ASCII (A-labels) without a
/// trailing dot, optionally with one leading `*.`; IP addresses in canonical
/// text form (RFC 5952 for IPv6).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: IdentifierKind,
    pub value: String,
}

impl From<&Identifier> for crate::error::NamedIdentifier {
    fn from(id: &Identifier) -> Self {
        Self {
            type_: id.kind.as_str().to_string(),
            value: id.value.clone(),
        }
    }
}

impl Identifier {
    /// Parses and normalizes an identifier from an order or a CSR.
    pub fn parse(kind: &str, value: &str) -> Result<Self, Error> {
        let kind = IdentifierKind::from_str(kind)?;
        match kind {
            IdentifierKind::Dns => Self::dns(value),
            IdentifierKind::Ip => Self::ip(value),
        }
    }

    pub fn dns(value: &str) -> Result<Self, Error> {
        let reject = |why: &str| {
            Error::new(
                ErrorKind::RejectedIdentifier,
                format!("{value:?} is not a valid DNS name: {why}"),
            )
        };
        let lower = value.to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        if name.is_empty() {
            return Err(reject("it is empty"));
        }
        if name.len() > 253 {
            return Err(reject("it is longer than 253 characters"));
        }
        if !name.is_ascii() {
            return Err(reject("use the A-label (punycode, xn--) form"));
        }
        if name.parse::<IpAddr>().is_ok() {
            return Err(reject("it is an IP address; use an \"ip\" identifier"));
        }
        let (wildcard, base) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, name),
        };
        let labels: Vec<&str> = base.split('.').collect();
        if labels.len() < 2 {
            return Err(reject("it must have at least two labels"));
        }
        for label in &labels {
            if label.is_empty() {
                return Err(reject("it has an empty label"));
            }
            if label.len() > 63 {
                return Err(reject("a label is longer than 63 characters"));
            }
            if *label == "*" {
                return Err(reject("a wildcard is only allowed as the leftmost label"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(reject("labels may hold only letters, digits and hyphens"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(reject("a label must not start or end with a hyphen"));
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(reject("the top-level label must not be all digits"));
        }
        let value = if wildcard {
            format!("*.{base}")
        } else {
            base.to_string()
        };
        Ok(Self {
            kind: IdentifierKind::Dns,
            value,
        })
    }

    pub fn ip(value: &str) -> Result<Self, Error> {
        let addr: IpAddr = value.parse().map_err(|_| {
            Error::new(
                ErrorKind::RejectedIdentifier,
                format!("{value:?} is not a valid IP address"),
            )
        })?;
        // `::ffff:10.0.0.1` names an IPv4 address; clients treat it as one,
        // so it must be ordered (and checked against policies) as one.
        if addr.to_canonical() != addr {
            return Err(Error::new(
                ErrorKind::RejectedIdentifier,
                format!(
                    "{value:?} is an IPv4-mapped IPv6 address; order {} instead",
                    addr.to_canonical()
                ),
            ));
        }
        Ok(Self::from_ip(addr))
    }

    pub fn from_ip(addr: IpAddr) -> Self {
        Self {
            kind: IdentifierKind::Ip,
            value: addr.to_string(),
        }
    }

    /// True for a `*.` DNS name.
    pub fn is_wildcard(&self) -> bool {
        self.kind == IdentifierKind::Dns && self.value.starts_with("*.")
    }

    /// The name without its wildcard label: the name challenges are answered for
    /// (RFC 8555 §7.1.3: the authorization's identifier omits the `*.`).
    pub fn base_name(&self) -> &str {
        self.value.strip_prefix("*.").unwrap_or(&self.value)
    }

    /// The IP address of an `ip` identifier.
    pub fn ip_addr(&self) -> Option<IpAddr> {
        match self.kind {
            IdentifierKind::Ip => self.value.parse().ok(),
            IdentifierKind::Dns => None,
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_are_normalized() {
        assert_eq!(
            Identifier::dns("WWW.Example.COM.").unwrap().value,
            "www.example.com"
        );
        assert_eq!(
            Identifier::dns("*.example.com").unwrap().value,
            "*.example.com"
        );
        assert!(Identifier::dns("*.example.com").unwrap().is_wildcard());
        assert_eq!(
            Identifier::dns("*.example.com").unwrap().base_name(),
            "example.com"
        );
    }

    #[test]
    fn bad_dns_names_are_rejected() {
        for bad in [
            "",
            "com",
            "a..b.com",
            "-a.example.com",
            "a-.example.com",
            "a.*.example.com",
            "*.*.example.com",
            "exa mple.com",
            "bücher.de",
            "1.2.3.4",
            "a.123",
            "a_b.example.com",
            &format!("{}.com", "a".repeat(64)),
        ] {
            let err = Identifier::dns(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::RejectedIdentifier, "{bad:?} accepted");
        }
    }

    #[test]
    fn ip_identifiers_are_canonical() {
        assert_eq!(
            Identifier::ip("2001:DB8:0:0::1").unwrap().value,
            "2001:db8::1"
        );
        assert_eq!(Identifier::ip("127.0.0.1").unwrap().value, "127.0.0.1");
        assert!(Identifier::ip("127.0.0.256").is_err());
        assert!(Identifier::ip("::ffff:10.0.0.1").is_err());
        assert_eq!(
            Identifier::parse("email", "a@b.c").unwrap_err().kind,
            ErrorKind::UnsupportedIdentifier
        );
    }
}
