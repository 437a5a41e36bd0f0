//! The challenge types the hub offers and validates, by their ACME names.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// The challenge types the hub validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeType {
    /// RFC 8555 §8.3: a file under `/.well-known/acme-challenge/` over HTTP.
    Http01,
    /// RFC 8555 §8.4: a TXT record at `_acme-challenge.<name>`.
    Dns01,
    /// RFC 8737: a special certificate offered for ALPN `acme-tls/1`.
    TlsAlpn01,
    /// draft-ietf-acme-dns-account-label: the dns-01 value at
    /// `_<account label>._acme-challenge.<name>`, so several accounts can
    /// validate one name at once.
    DnsAccount01,
    /// draft-ietf-acme-dns-persist (-01 wire format): a persistent TXT
    /// record at `_validation-persist.<name>` naming this CA and the
    /// account; no token, and no DNS write per order.
    DnsPersist01,
}

impl ChallengeType {
    pub const ALL: [ChallengeType; 5] = [
        Self::Http01,
        Self::Dns01,
        Self::TlsAlpn01,
        Self::DnsAccount01,
        Self::DnsPersist01,
    ];

    /// What a new instance offers: the RFC 8555 and RFC 8737 types. The
    /// newer DNS types are an operator's choice (a dns-persist-01 record
    /// lets a leaked account key issue for as long as the record stays).
    pub const DEFAULT: [ChallengeType; 3] = [Self::Http01, Self::Dns01, Self::TlsAlpn01];

    /// The ACME wire name, e.g. `http-01`; stored as it is.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeType::Http01 => "http-01",
            ChallengeType::Dns01 => "dns-01",
            ChallengeType::TlsAlpn01 => "tls-alpn-01",
            ChallengeType::DnsAccount01 => "dns-account-01",
            ChallengeType::DnsPersist01 => "dns-persist-01",
        }
    }
}

impl fmt::Display for ChallengeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChallengeType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "http-01" => Ok(ChallengeType::Http01),
            "dns-01" => Ok(ChallengeType::Dns01),
            "tls-alpn-01" => Ok(ChallengeType::TlsAlpn01),
            "dns-account-01" => Ok(ChallengeType::DnsAccount01),
            "dns-persist-01" => Ok(ChallengeType::DnsPersist01),
            other => Err(Error::malformed(format!(
                "challenge type {other:?} is not supported; use \"http-01\", \"dns-01\", \"tls-alpn-01\", \"dns-account-01\" or \"dns-persist-01\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn challenge_types_round_trip_their_wire_names() {
        for t in ChallengeType::ALL {
            assert_eq!(t.as_str().parse::<ChallengeType>().unwrap(), t);
        }
        let err = "http-02".parse::<ChallengeType>().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Malformed);
        assert!(err.detail.contains("http-02"));
    }
}
