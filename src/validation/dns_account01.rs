//! dns-account-01 (draft-ietf-acme-dns-account-label): the dns-01 value,
//! at `_<label>._acme-challenge.<base name>` where the label is derived
//! from the account's URL, so that several accounts (a fleet's CA
//! accounts, two replicas, the customer's own tooling) can validate one
//! name at the same moment without overwriting each other's records.

use super::{Failure, Validator};
use crate::policy::Identifier;

/// The account's label: lowercase base32 (RFC 4648, no padding) of the
/// first 10 bytes of SHA-256 of the account URL exactly as its `Location`
/// header gave it (16 characters).
pub fn account_label(account_url: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, account_url.as_bytes());
    base32_lower(&digest.as_ref()[..10])
}

/// `_<account label>._acme-challenge.<name>`, for a name without `*.`.
pub fn record_name(account_url: &str, name: &str) -> String {
    format!("_{}._acme-challenge.{name}", account_label(account_url))
}

/// RFC 4648 §6 base32, lowercase, without padding.
fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

impl Validator {
    pub(super) async fn dns_account01(
        &self,
        identifier: &Identifier,
        key_authorization: &str,
        account_url: &str,
    ) -> Result<(), Failure> {
        let name = record_name(account_url, identifier.base_name());
        // The draft asks failures to name the account URL the label came from.
        let note = format!(" (the label is that of account {account_url})");
        self.expect_digest(&name, identifier, key_authorization, &note)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{ChallengeType, Validator, key_authorization_digest};
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn labels_match_the_draft_and_base32() {
        // The draft's example, and two more computed independently.
        assert_eq!(
            record_name(
                "https://example.com/acme/acct/ExampleAccount",
                "example.org"
            ),
            "_ujmmovf2vn55tgye._acme-challenge.example.org"
        );
        assert_eq!(
            account_label("https://ca.example/acct/123"),
            "h5zlfqoi7m5jaytl"
        );
        // A trailing slash is another URL, so another label.
        assert_eq!(
            account_label("https://example.com/acme/acct/ExampleAccount/"),
            "dzis72q2qq5yqmsx"
        );
        // RFC 4648 §10 test vectors (padding left off).
        assert_eq!(base32_lower(b"foobar"), "mzxw6ytboi");
        assert_eq!(base32_lower(b"f"), "my");
    }

    const ACCOUNT: &str = "https://hub.test/acme/default/account/A1";
    const KEY_AUTH: &str = "tok.thumbprint";

    async fn validate(
        dns: &crate::zone::authoritative::AuthoritativeServer,
        name: &str,
        account: &str,
    ) -> Result<(), crate::error::Error> {
        let v = Validator::new(&lab_config(dns)).unwrap();
        let identifier = Identifier::dns(name).unwrap();
        v.validate(
            ChallengeType::DnsAccount01,
            &identifier,
            "tok",
            KEY_AUTH,
            account,
        )
        .await
    }

    #[tokio::test]
    async fn the_record_of_this_account_validates_and_anothers_does_not() {
        let dns = lab_dns().await;
        let digest = key_authorization_digest(KEY_AUTH);
        dns.add_txt(&record_name(ACCOUNT, "example.com"), &digest);
        validate(&dns, "example.com", ACCOUNT).await.unwrap();
        // A wildcard uses its base name, as dns-01 does.
        validate(&dns, "*.example.com", ACCOUNT).await.unwrap();
        // The same value under another account's label proves nothing for
        // this one, and the plain dns-01 name is not looked at.
        dns.add_txt("_acme-challenge.example.net", &digest);
        let other = "https://hub.test/acme/default/account/B2";
        dns.add_txt(&record_name(other, "example.net"), &digest);
        let err = validate(&dns, "example.net", ACCOUNT).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Dns);
        assert!(
            err.detail.contains(&record_name(ACCOUNT, "example.net")),
            "{}",
            err.detail
        );
        assert!(err.detail.contains(ACCOUNT), "{}", err.detail);
    }
}
