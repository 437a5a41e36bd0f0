//! dns-persist-01 (draft-ietf-acme-dns-persist, the -01 wire format that
//! Let's Encrypt and Pebble serve): a persistent TXT record at
//! `_validation-persist.<name>` (CNAMEs followed) names this CA and the
//! account, `<issuer-domain-name>; accounturi=<account URL>[;
//! policy=wildcard][; persistUntil=<unix time>]`, in the RFC 8659
//! issue-value syntax.
//!
//! A record whose issuer is not one of ours is another CA's and is ignored,
//! however it is written. One of ours is malformed when its syntax is
//! broken (a parameter without `=`, an empty tag, a tag or value with a
//! character the syntax does not allow, a trailing `;`), a parameter is
//! repeated, `accounturi` is missing or empty, or `persistUntil` is not a
//! base-10 integer; it does not authorize when `accounturi` is another
//! account's, `persistUntil` has passed, or the name is a wildcard and
//! `policy=wildcard` is missing. Unknown parameters are ignored. Several
//! records may stand side by side: any one that authorizes is enough, and
//! when none does the error names each of ours and what is wrong with it.

use super::caa::split_issue_value;
use super::{Failure, Validator};
use crate::error::ErrorKind;
use crate::policy::Identifier;

/// The label the record sits under.
pub const LABEL: &str = "_validation-persist";

/// One record of ours, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistRecord {
    pub accounturi: String,
    pub wildcard: bool,
    pub persist_until: Option<i64>,
}

/// What a TXT value at `_validation-persist` is to this CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Another CA's record (or none at all): not looked at further.
    NotOurs,
    /// Ours, and broken: why.
    Malformed(String),
    Ours(PersistRecord),
}

/// Parses one TXT value (its strings already joined) against the issuer
/// domain names this CA goes by (lowercase, no trailing dot).
pub fn parse(record: &str, issuers: &[String]) -> Parsed {
    let Some((issuer, parameters)) = split_issue_value(record) else {
        return Parsed::NotOurs;
    };
    if !issuers.contains(&issuer) {
        return Parsed::NotOurs;
    }
    let parameters = match parameters {
        Ok(parameters) => parameters,
        Err(why) => return Parsed::Malformed(why),
    };
    let mut accounturi = None;
    let mut wildcard = false;
    let mut persist_until = None;
    for (i, (tag, value)) in parameters.iter().enumerate() {
        if parameters[..i].iter().any(|(seen, _)| seen == tag) {
            return Parsed::Malformed(format!("parameter {tag} appears twice"));
        }
        match tag.as_str() {
            "accounturi" if value.is_empty() => {
                return Parsed::Malformed("accounturi is empty".into());
            }
            "accounturi" => accounturi = Some(value.clone()),
            "policy" => wildcard = value.eq_ignore_ascii_case("wildcard"),
            "persistuntil" => match value.parse::<i64>() {
                Ok(at) => persist_until = Some(at),
                Err(_) => {
                    return Parsed::Malformed(format!(
                        "persistUntil {value:?} is not a base-10 UNIX time"
                    ));
                }
            },
            // Unknown parameters are ignored (draft §4.1).
            _ => {}
        }
    }
    match accounturi {
        Some(accounturi) => Parsed::Ours(PersistRecord {
            accounturi,
            wildcard,
            persist_until,
        }),
        None => Parsed::Malformed("accounturi is missing".into()),
    }
}

/// Why a well-formed record of ours does not authorize `account_url` for
/// the name (`wildcard` when the order asks for `*.name`) at `now`.
pub fn refusal(
    record: &PersistRecord,
    account_url: &str,
    wildcard: bool,
    now: i64,
) -> Option<String> {
    if record.accounturi != account_url {
        return Some(format!(
            "accounturi {} is another account's, not {account_url}",
            record.accounturi
        ));
    }
    if let Some(until) = record.persist_until
        && now > until
    {
        return Some(format!(
            "persistUntil {until} has passed ({})",
            crate::util::rfc3339(until)
        ));
    }
    if wildcard && !record.wildcard {
        return Some("a wildcard name needs policy=wildcard".into());
    }
    None
}

impl Validator {
    /// The issuer domain names a dns-persist-01 record may name for this
    /// CA: its CAA identities, lowercase, without a trailing dot, at most
    /// 10 (draft §3.1). None: dns-persist-01 is not offered.
    pub fn issuer_domain_names(&self) -> Vec<String> {
        self.caa_identities
            .iter()
            .take(10)
            .map(|i| i.trim_end_matches('.').to_ascii_lowercase())
            .collect()
    }

    pub(super) async fn dns_persist01(
        &self,
        identifier: &Identifier,
        account_url: &str,
    ) -> Result<(), Failure> {
        let name = format!("{LABEL}.{}", identifier.base_name());
        let issuers = self.issuer_domain_names();
        let values = self.txt_at(&name, identifier, "").await?;
        let now = crate::util::now();
        let mut malformed = Vec::new();
        let mut refused = Vec::new();
        for value in &values {
            match parse(value, &issuers) {
                Parsed::NotOurs => {}
                Parsed::Malformed(why) => malformed.push(format!("{value:?}: {why}")),
                Parsed::Ours(record) => {
                    match refusal(&record, account_url, identifier.is_wildcard(), now) {
                        None => return Ok(()),
                        Some(why) => refused.push(format!("{value:?}: {why}")),
                    }
                }
            }
        }
        let (kind, found) = match (malformed.is_empty(), refused.is_empty()) {
            (true, true) => {
                return Err(Failure::permanent(
                    ErrorKind::Unauthorized,
                    format!(
                        "none of the {} TXT record(s) at {name} names this CA ({}); publish \
                         \"{}; accounturi={account_url}\" there to validate {}",
                        values.len(),
                        issuers.join(", "),
                        issuers.first().map(String::as_str).unwrap_or_default(),
                        identifier.value
                    ),
                ));
            }
            // A broken record is the likelier mistake to point at.
            (false, _) => (ErrorKind::Malformed, [malformed, refused].concat()),
            (true, false) => (ErrorKind::Unauthorized, refused),
        };
        Err(Failure::permanent(
            kind,
            format!(
                "no TXT record at {name} authorizes account {account_url} for {}: {}",
                identifier.value,
                found.join("; ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{ChallengeType, Validator};
    use super::*;

    const ISSUER: &str = "authority.example";
    const ACCOUNT: &str = "https://ca.example/acct/123";

    fn ours(record: &str) -> Parsed {
        parse(record, &[ISSUER.to_string()])
    }

    fn record(accounturi: &str, wildcard: bool, persist_until: Option<i64>) -> Parsed {
        Parsed::Ours(PersistRecord {
            accounturi: accounturi.into(),
            wildcard,
            persist_until,
        })
    }

    #[test]
    fn the_drafts_examples_parse() {
        // draft -01 §4.1 and §4.3 examples, strings joined as DNS serves them.
        assert_eq!(
            ours("authority.example; accounturi=https://ca.example/acct/123"),
            record(ACCOUNT, false, None)
        );
        assert_eq!(
            ours("authority.example; accounturi=https://ca.example/acct/123; policy=wildcard"),
            record(ACCOUNT, true, None)
        );
        assert_eq!(
            ours(
                "authority.example; accounturi=https://ca.example/acct/123; policy=wildcard; persistUntil=1721952000"
            ),
            record(ACCOUNT, true, Some(1721952000))
        );
        // Whitespace around everything, tag and value case as Pebble allows.
        assert_eq!(
            ours(
                "   Authority.Example.   ;   accounturi   =   https://ca.example/acct/123   ;   POLICY   =   wIlDcArD   ;   persistUntil   =   4102444800   "
            ),
            record(ACCOUNT, true, Some(4102444800))
        );
        // Unknown parameters, even empty, are ignored; another policy is none.
        assert_eq!(
            ours("authority.example;accounturi=https://ca.example/acct/123;foo=;policy=strict"),
            record(ACCOUNT, false, None)
        );
    }

    #[test]
    fn another_cas_record_is_not_looked_at() {
        for text in [
            "other.example; accounturi=https://ca.example/acct/123",
            "other.example;garbage;;",
            "; accounturi=https://ca.example/acct/123",
            "",
        ] {
            assert_eq!(ours(text), Parsed::NotOurs, "{text:?}");
        }
    }

    #[test]
    fn broken_records_of_ours_say_what_is_broken() {
        for (text, why) in [
            (
                "authority.example;accounturi=https://ca.example/acct/123;",
                "empty parameter",
            ),
            (
                "authority.example;accounturi=https://ca.example/acct/123;;policy=wildcard",
                "empty parameter",
            ),
            (
                "authority.example;accounturi=https://ca.example/acct/123;invalidparam",
                "no \"=\"",
            ),
            (
                "authority.example;accounturi=https://ca.example/acct/123;=abc",
                "tag \"\"",
            ),
            (
                "authority.example;accounturi=https://ca.example/acct/123;bad tag=value",
                "tag \"bad tag\"",
            ),
            ("authority.example;accounturi=", "accounturi is empty"),
            ("authority.example;policy=wildcard", "accounturi is missing"),
            ("authority.example", "accounturi is missing"),
            (
                "authority.example;accounturi=https://ca.example/acct/123;policy=wild card",
                "value of policy",
            ),
            (
                "authority.example;accounturi=https://ca.example/acct/123;persistUntil=soon",
                "not a base-10",
            ),
            (
                "authority.example;accounturi=https://ca.example/acct/123;persistUntil=",
                "not a base-10",
            ),
            (
                "authority.example;accounturi=https://ca.example/acct/123;foo=bar;foo=baz",
                "foo appears twice",
            ),
            (
                "authority.example;ACCOUNTURI=https://ca.example/acct/123;accounturi=https://ca.example/acct/456",
                "accounturi appears twice",
            ),
            (
                "authority.example;accounturi=https://ca.example/acct/\u{e9}",
                "non-ASCII",
            ),
        ] {
            match ours(text) {
                Parsed::Malformed(detail) => assert!(detail.contains(why), "{text:?}: {detail}"),
                other => panic!("{text:?} parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn a_record_authorizes_only_its_account_until_its_time_and_wildcards_by_policy() {
        let at = |r: Parsed| match r {
            Parsed::Ours(r) => r,
            other => panic!("{other:?}"),
        };
        let plain = at(ours(
            "authority.example; accounturi=https://ca.example/acct/123",
        ));
        assert_eq!(refusal(&plain, ACCOUNT, false, 0), None);
        assert!(
            refusal(&plain, "https://ca.example/acct/999", false, 0)
                .unwrap()
                .contains("another account's")
        );
        assert!(
            refusal(&plain, ACCOUNT, true, 0)
                .unwrap()
                .contains("policy=wildcard")
        );
        let until = at(ours(
            "authority.example; accounturi=https://ca.example/acct/123; persistUntil=1721952000",
        ));
        // Usable up to and at the time, not after.
        assert_eq!(refusal(&until, ACCOUNT, false, 1721952000), None);
        assert!(
            refusal(&until, ACCOUNT, false, 1721952001)
                .unwrap()
                .contains("2024-07-26T00:00:00Z")
        );
        let expired = at(ours(
            "authority.example; accounturi=https://ca.example/acct/123; persistUntil=-1",
        ));
        assert!(refusal(&expired, ACCOUNT, false, 0).is_some());
    }

    async fn validate(
        dns: &crate::zone::authoritative::AuthoritativeServer,
        name: &str,
    ) -> Result<(), crate::error::Error> {
        let mut config = lab_config(dns);
        config.caa_identities = vec![ISSUER.into()];
        let v = Validator::new(&config).unwrap();
        let identifier = Identifier::dns(name).unwrap();
        v.validate(
            ChallengeType::DnsPersist01,
            &identifier,
            "tok",
            "unused",
            ACCOUNT,
        )
        .await
    }

    #[tokio::test]
    async fn validation_takes_any_record_that_authorizes_and_names_what_is_wrong() {
        let dns = lab_dns().await;
        // A broken record and another account's beside the right one.
        dns.add_txt(
            "_validation-persist.example.com",
            "authority.example;accounturi=",
        );
        dns.add_txt(
            "_validation-persist.example.com",
            "authority.example; accounturi=https://ca.example/acct/999",
        );
        dns.add_txt(
            "_validation-persist.example.com",
            "authority.example; accounturi=https://ca.example/acct/123",
        );
        validate(&dns, "example.com").await.unwrap();
        // The wildcard needs policy=wildcard: the error names the record.
        let err = validate(&dns, "*.example.com").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Malformed, "{}", err.detail);
        assert!(err.detail.contains("policy=wildcard"), "{}", err.detail);
        assert!(err.detail.contains("accounturi is empty"), "{}", err.detail);

        // Through a CNAME, as a delegated name is.
        dns.set_cname(
            "_validation-persist.shop.example.org",
            "k3v9.acme.hub.example",
        );
        dns.add_txt(
            "k3v9.acme.hub.example",
            "authority.example; accounturi=https://ca.example/acct/123; policy=wildcard",
        );
        validate(&dns, "*.shop.example.org").await.unwrap();

        // Only another CA's records: unauthorized, saying what to publish.
        dns.add_txt(
            "_validation-persist.example.net",
            "other.example; accounturi=https://ca.example/acct/123",
        );
        let err = validate(&dns, "example.net").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unauthorized);
        assert!(
            err.detail
                .contains("\"authority.example; accounturi=https://ca.example/acct/123\""),
            "{}",
            err.detail
        );
        // Expired, for this account: unauthorized, naming the time.
        dns.add_txt(
            "_validation-persist.old.example.net",
            "authority.example; accounturi=https://ca.example/acct/123; persistUntil=1721952000",
        );
        let err = validate(&dns, "old.example.net").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unauthorized);
        assert!(err.detail.contains("has passed"), "{}", err.detail);
        // No record at all: a dns error naming where it was looked for.
        dns.set_a("none.example.net", &["192.0.2.1".parse().unwrap()]);
        let err = validate(&dns, "none.example.net").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Dns);
        assert!(
            err.detail.contains("_validation-persist.none.example.net"),
            "{}",
            err.detail
        );
    }
}
