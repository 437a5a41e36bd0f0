//! dns-01 (RFC 8555 §8.4): a TXT record at `_acme-challenge.<base name>`
//! holding base64url(SHA-256(key authorization)), found through the hub's
//! resolver with CNAMEs followed (that is how delegation to a technical zone
//! works).

use super::{Failure, LookupError, Validator, key_authorization_digest};
use crate::error::ErrorKind;
use crate::policy::Identifier;

impl Validator {
    pub(super) async fn dns01(
        &self,
        identifier: &Identifier,
        key_authorization: &str,
    ) -> Result<(), Failure> {
        // RFC 8555 §8.4: for a wildcard the record sits at the base name.
        let name = format!("_acme-challenge.{}", identifier.base_name());
        self.expect_digest(&name, identifier, key_authorization, "")
            .await
    }

    /// The TXT records at `name` (CNAMEs followed) must hold the key
    /// authorization's digest; `note` is added to a failure's detail.
    pub(super) async fn expect_digest(
        &self,
        name: &str,
        identifier: &Identifier,
        key_authorization: &str,
        note: &str,
    ) -> Result<(), Failure> {
        let expected = key_authorization_digest(key_authorization);
        let values = self.txt_at(name, identifier, note).await?;
        if values.contains(&expected) {
            return Ok(());
        }
        Err(Failure::permanent(
            ErrorKind::Unauthorized,
            format!(
                "the {} TXT record(s) at {name} do not match the expected value {expected} for {}{note}",
                values.len(),
                identifier.value
            ),
        ))
    }

    /// The TXT values at `name`, CNAMEs followed; a missing name or record
    /// is a `dns` failure naming it (`note` added).
    pub(super) async fn txt_at(
        &self,
        name: &str,
        identifier: &Identifier,
        note: &str,
    ) -> Result<Vec<String>, Failure> {
        match self.resolver.lookup_txt(name).await {
            Ok(values) => Ok(values),
            Err(LookupError::NoSuchName { .. }) => Err(Failure::permanent(
                ErrorKind::Dns,
                format!(
                    "no TXT record found at {name} (the name does not exist) while validating {}{note}",
                    identifier.value
                ),
            )),
            Err(LookupError::NoRecords { .. }) => Err(Failure::transient(
                ErrorKind::Dns,
                format!(
                    "no TXT record found at {name} while validating {}{note}",
                    identifier.value
                ),
            )),
            Err(e) => {
                let transient = e.is_transient();
                let failure = format!(
                    "could not look up the TXT records at {name} for {}: {e}",
                    identifier.value
                );
                Err(if transient {
                    Failure::transient(ErrorKind::Dns, failure)
                } else {
                    Failure::permanent(ErrorKind::Dns, failure)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{ChallengeType, Validator, key_authorization_digest};
    use crate::error::ErrorKind;
    use crate::policy::Identifier;

    const KEY_AUTH: &str = "tok.thumbprint";

    async fn validate(
        dns: &crate::zone::authoritative::AuthoritativeServer,
        name: &str,
    ) -> Result<(), crate::error::Error> {
        let v = Validator::new(&lab_config(dns)).unwrap();
        let identifier = Identifier::dns(name).unwrap();
        v.validate(ChallengeType::Dns01, &identifier, "tok", KEY_AUTH, "")
            .await
    }

    #[tokio::test]
    async fn matching_txt_among_others_is_valid() {
        let dns = lab_dns().await;
        dns.add_txt("_acme-challenge.example.com", "some-other-order");
        dns.add_txt(
            "_acme-challenge.example.com",
            &key_authorization_digest(KEY_AUTH),
        );
        validate(&dns, "example.com").await.unwrap();
        // A wildcard is validated at its base name.
        validate(&dns, "*.example.com").await.unwrap();
    }

    #[tokio::test]
    async fn wrong_value_is_unauthorized() {
        let dns = lab_dns().await;
        dns.add_txt("_acme-challenge.example.com", "stale-value");
        let err = validate(&dns, "example.com").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unauthorized);
        assert!(
            err.detail.contains("_acme-challenge.example.com"),
            "{}",
            err.detail
        );
        assert!(err.detail.contains("1 TXT record"), "{}", err.detail);
        assert!(
            err.detail.contains(&key_authorization_digest(KEY_AUTH)),
            "{}",
            err.detail
        );
    }

    #[tokio::test]
    async fn missing_record_is_a_dns_error() {
        let dns = lab_dns().await;
        dns.set_a("example.com", &["192.0.2.1".parse().unwrap()]);
        let err = validate(&dns, "example.com").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Dns);
        assert!(
            err.detail
                .contains("no TXT record found at _acme-challenge.example.com"),
            "{}",
            err.detail
        );
    }

    #[tokio::test]
    async fn cname_delegation_to_another_zone_is_followed() {
        let dns = lab_dns().await;
        dns.set_cname("_acme-challenge.shop.customer.com", "k3v9.acme.hub.example");
        dns.add_txt("k3v9.acme.hub.example", &key_authorization_digest(KEY_AUTH));
        validate(&dns, "shop.customer.com").await.unwrap();

        // A two-link chain whose end the server must look up separately.
        dns.set_cname("_acme-challenge.api.customer.com", "alias.customer.com");
        dns.set_cname("alias.customer.com", "k3v9.acme.hub.example");
        validate(&dns, "api.customer.com").await.unwrap();
    }

    #[tokio::test]
    async fn cname_to_a_missing_target_is_a_dns_error() {
        let dns = lab_dns().await;
        dns.set_cname("_acme-challenge.shop.customer.com", "gone.acme.hub.example");
        let err = validate(&dns, "shop.customer.com").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Dns);
    }
}
