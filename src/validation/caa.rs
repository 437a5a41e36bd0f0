//! CAA (RFC 8659): may this hub issue for a name? The relevant record set is
//! the first one found climbing from the name toward the root (§3); `issue`
//! authorizes names, `issuewild` (when present) decides for wildcards (§4.3),
//! and a critical property we do not understand forbids issuance (§4.1).

use hickory_resolver::proto::rr::rdata::CAA;

use super::{LookupError, Validator};
use crate::error::{Error, ErrorKind};
use crate::policy::{Identifier, IdentifierKind};

/// Property tags this CA understands (RFC 8659 §4.2–4.4, RFC 8657 is not
/// implemented: its parameters are ignored, which RFC 8659 §4.2 permits).
const KNOWN_TAGS: &[&str] = &["issue", "issuewild", "iodef"];

/// How many records a detail lists before summarizing the rest.
const LISTED_RECORDS: usize = 4;

impl Validator {
    pub(super) async fn caa(&self, identifier: &Identifier) -> Result<(), Error> {
        self.caa_for(identifier, &self.caa_identities).await
    }

    /// Whether CAA lets a CA known by `identities` issue for `identifier`
    /// (this hub's own identities, or an upstream CA account's).
    pub async fn caa_for(
        &self,
        identifier: &Identifier,
        identities: &[String],
    ) -> Result<(), Error> {
        if identities.is_empty() || identifier.kind == IdentifierKind::Ip {
            return Ok(());
        }
        let name = identifier.base_name();
        let labels: Vec<&str> = name.split('.').collect();
        for start in 0..labels.len() {
            let Some(suffix) = labels.get(start..) else {
                break;
            };
            let candidate = suffix.join(".");
            let lookup =
                tokio::time::timeout(self.attempt_timeout, self.resolver.lookup_caa(&candidate))
                    .await;
            let records = match lookup {
                Ok(Ok(records)) => records,
                Ok(Err(LookupError::NoSuchName { .. } | LookupError::NoRecords { .. })) => continue,
                // RFC 8659 §3 leaves lookup failures to the CA; like other CAs we
                // refuse rather than issue past records we could not read.
                Ok(Err(e)) => {
                    return Err(Error::new(
                        ErrorKind::Dns,
                        format!(
                            "could not check CAA for {} at {candidate}: {e}; try again once DNS answers",
                            identifier.value
                        ),
                    ));
                }
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::Dns,
                        format!(
                            "looking up CAA for {} at {candidate} took longer than {} s; try again once DNS answers",
                            identifier.value,
                            self.attempt_timeout.as_secs()
                        ),
                    ));
                }
            };
            if records.is_empty() {
                continue;
            }
            return evaluate(identities, identifier, &candidate, &records);
        }
        Ok(())
    }
}

fn evaluate(
    identities: &[String],
    identifier: &Identifier,
    owner: &str,
    records: &[CAA],
) -> Result<(), Error> {
    let refuse = |why: String| {
        Error::new(
            ErrorKind::Caa,
            format!("CAA records at {owner} ({}) {why}", describe(records)),
        )
    };
    if let Some(unknown) = records
        .iter()
        .find(|r| r.issuer_critical && !KNOWN_TAGS.iter().any(|t| r.tag.eq_ignore_ascii_case(t)))
    {
        return Err(refuse(format!(
            "contain the critical property {:?}, which this CA does not understand, so it must not issue for {} (RFC 8659 §4.1)",
            unknown.tag, identifier.value
        )));
    }
    let with_tag = |tag: &str| -> Vec<&CAA> {
        records
            .iter()
            .filter(|r| r.tag.eq_ignore_ascii_case(tag))
            .collect()
    };
    let issuewild = with_tag("issuewild");
    // RFC 8659 §4.3: issuewild, when present, replaces issue for wildcards.
    let relevant = if identifier.is_wildcard() && !issuewild.is_empty() {
        issuewild
    } else {
        with_tag("issue")
    };
    if relevant.is_empty() {
        // Only iodef or other non-critical properties: no restriction.
        return Ok(());
    }
    let authorized = relevant
        .iter()
        .filter_map(|r| issuer_domain(&r.value))
        .any(|domain| identities.contains(&domain));
    if authorized {
        return Ok(());
    }
    Err(refuse(format!(
        "do not authorize {} to issue for {}; add a CAA record such as `{} CAA 0 {} \"{}\"`",
        identities.join(" or "),
        identifier.value,
        owner,
        if identifier.is_wildcard() {
            "issuewild"
        } else {
            "issue"
        },
        identities.first().map(String::as_str).unwrap_or_default()
    )))
}

/// The issuer-domain-name of an `issue`/`issuewild` value (RFC 8659 §4.2),
/// lowercased; `None` for an empty or malformed one, which authorizes no one.
fn issuer_domain(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?;
    let domain = text.split(';').next()?.trim_matches([' ', '\t']);
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let well_formed = !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    well_formed.then_some(domain)
}

/// A short presentation form of a record set for error details.
fn describe(records: &[CAA]) -> String {
    let mut shown: Vec<String> = records
        .iter()
        .take(LISTED_RECORDS)
        .map(|r| {
            let value = String::from_utf8_lossy(&r.value);
            let value: String = value.chars().take(80).collect();
            format!("{} {} \"{}\"", r.flags(), r.tag, value)
        })
        .collect();
    if records.len() > LISTED_RECORDS {
        shown.push(format!("and {} more", records.len() - LISTED_RECORDS));
    }
    shown.join("; ")
}

#[cfg(test)]
mod tests {
    use super::super::Validator;
    use super::super::testutil::*;
    use super::*;
    use crate::zone::authoritative::AuthoritativeServer;

    async fn check(dns: &AuthoritativeServer, name: &str) -> Result<(), Error> {
        let v = Validator::new(&lab_config(dns)).unwrap();
        v.check_caa(&Identifier::dns(name).unwrap()).await
    }

    #[tokio::test]
    async fn no_caa_records_allow_issuance() {
        let dns = lab_dns().await;
        dns.set_a("www.example.com", &["192.0.2.1".parse().unwrap()]);
        check(&dns, "www.example.com").await.unwrap();
        check(&dns, "unknown.example.org").await.unwrap();
    }

    #[tokio::test]
    async fn issue_for_us_allows_and_for_others_refuses() {
        let dns = lab_dns().await;
        dns.add_caa("ours.example.com", 0, "issue", "acmehub.local");
        dns.add_caa("theirs.example.com", 0, "issue", "other.ca");
        dns.add_caa("theirs.example.com", 0, "iodef", "mailto:sec@example.com");
        check(&dns, "ours.example.com").await.unwrap();
        let err = check(&dns, "theirs.example.com").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Caa);
        assert!(
            err.detail.contains("CAA records at theirs.example.com"),
            "{}",
            err.detail
        );
        assert!(
            err.detail.contains("0 issue \"other.ca\""),
            "{}",
            err.detail
        );
        assert!(err.detail.contains("acmehub.local"), "{}", err.detail);
    }

    #[tokio::test]
    async fn parameters_and_case_do_not_matter_but_empty_issuer_forbids() {
        let dns = lab_dns().await;
        dns.add_caa(
            "a.example.com",
            0,
            "ISSUE",
            " AcmeHub.Local; accounturi=https://x/acct/1",
        );
        dns.add_caa("b.example.com", 0, "issue", ";");
        check(&dns, "a.example.com").await.unwrap();
        assert_eq!(
            check(&dns, "b.example.com").await.unwrap_err().kind,
            ErrorKind::Caa
        );
    }

    #[tokio::test]
    async fn issuewild_decides_for_wildcards_only() {
        let dns = lab_dns().await;
        dns.add_caa("example.com", 0, "issue", "acmehub.local");
        dns.add_caa("example.com", 0, "issuewild", "other.ca");
        check(&dns, "example.com").await.unwrap();
        let err = check(&dns, "*.example.com").await.unwrap_err();
        assert!(err.detail.contains("issuewild"), "{}", err.detail);

        let dns = lab_dns().await;
        dns.add_caa("example.net", 0, "issue", "other.ca");
        dns.add_caa("example.net", 0, "issuewild", "acmehub.local");
        check(&dns, "*.example.net").await.unwrap();
        assert!(check(&dns, "example.net").await.is_err());

        // Without issuewild, issue governs wildcards too.
        let dns = lab_dns().await;
        dns.add_caa("example.org", 0, "issue", "other.ca");
        assert!(check(&dns, "*.example.org").await.is_err());
    }

    #[tokio::test]
    async fn caa_at_the_parent_applies_and_the_closest_set_wins() {
        let dns = lab_dns().await;
        dns.add_caa("example.com", 0, "issue", "other.ca");
        dns.set_a("deep.www.example.com", &["192.0.2.1".parse().unwrap()]);
        let err = check(&dns, "deep.www.example.com").await.unwrap_err();
        assert!(
            err.detail.contains("CAA records at example.com"),
            "{}",
            err.detail
        );

        dns.add_caa("www.example.com", 0, "issue", "acmehub.local");
        check(&dns, "deep.www.example.com").await.unwrap();
    }

    #[tokio::test]
    async fn critical_unknown_property_forbids() {
        let dns = lab_dns().await;
        dns.add_caa("example.com", 0, "issue", "acmehub.local");
        dns.add_caa("example.com", 128, "tbs", "whatever");
        let err = check(&dns, "example.com").await.unwrap_err();
        assert!(
            err.detail.contains("critical property \"tbs\""),
            "{}",
            err.detail
        );
        // Non-critical unknown properties are ignored.
        let dns = lab_dns().await;
        dns.add_caa("example.com", 0, "issue", "acmehub.local");
        dns.add_caa("example.com", 0, "tbs", "whatever");
        check(&dns, "example.com").await.unwrap();
    }

    #[tokio::test]
    async fn empty_identities_skip_the_check() {
        let dns = lab_dns().await;
        dns.add_caa("example.com", 0, "issue", "other.ca");
        let mut config = lab_config(&dns);
        config.caa_identities.clear();
        let v = Validator::new(&config).unwrap();
        v.check_caa(&Identifier::dns("example.com").unwrap())
            .await
            .unwrap();
    }

    #[test]
    fn issuer_domains_are_parsed_strictly() {
        assert_eq!(issuer_domain(b"ca.example"), Some("ca.example".into()));
        assert_eq!(
            issuer_domain(b"  CA.Example. ; a=b"),
            Some("ca.example".into())
        );
        assert_eq!(issuer_domain(b";"), None);
        assert_eq!(issuer_domain(b"%%%%%"), None);
        assert_eq!(issuer_domain(b"ca..example"), None);
    }
}
