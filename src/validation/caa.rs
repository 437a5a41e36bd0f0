//! CAA (RFC 8659): may this hub issue for a name? The relevant record set is
//! the first one found climbing from the name toward the root (§3); `issue`
//! authorizes names, `issuewild` (when present) decides for wildcards (§4.3),
//! and a critical property we do not understand forbids issuance (§4.1).
//! A property may bind itself to accounts and methods (RFC 8657): with
//! `accounturi` it authorizes only the ACME account of that URL, with
//! `validationmethods` only the challenge types it lists; a property that
//! repeats either, or lists no method, authorizes no one. Properties add
//! up: one that names this CA for another account forbids nothing by
//! itself.

use hickory_resolver::proto::rr::rdata::CAA;

use super::{LookupError, Validator};
use crate::error::{Error, ErrorKind};
use crate::policy::{ChallengeType, Identifier, IdentifierKind};

/// Property tags this CA understands (RFC 8659 §4.2–4.4; the parameters of
/// RFC 8657 inside `issue` and `issuewild`).
const KNOWN_TAGS: &[&str] = &["issue", "issuewild", "iodef"];

/// Who asks, for RFC 8657's parameters: the URL of the ACME account that
/// would get the certificate (none when the account has none yet), and the
/// label of the method that validated the name: a challenge type, or
/// [`PRE_AUTHORIZED`] (none while not known, as at newOrder:
/// `validationmethods` is then checked after validation).
#[derive(Debug, Clone, Copy, Default)]
pub struct Requester<'a> {
    pub account_url: Option<&'a str>,
    pub method: Option<&'a str>,
}

/// The CA-specific method label (RFC 8657 §4: `ca-` prefix) of names an
/// access key's `pre-authorized` policy vouches for, without a challenge.
pub const PRE_AUTHORIZED: &str = "ca-pre-authorized";

impl<'a> Requester<'a> {
    /// The hub's own account `account_url`, validating with `method`.
    pub fn validated(account_url: &'a str, method: ChallengeType) -> Self {
        Self {
            account_url: Some(account_url),
            method: Some(method.as_str()),
        }
    }
}

/// How many records a detail lists before summarizing the rest.
const LISTED_RECORDS: usize = 4;

impl Validator {
    pub(super) async fn caa(
        &self,
        identifier: &Identifier,
        requester: Requester<'_>,
    ) -> Result<(), Error> {
        self.caa_for(identifier, &self.caa_identities, requester)
            .await
    }

    /// Whether CAA lets a CA known by `identities` issue for `identifier`
    /// to `requester` (this hub's own identities and account, or an
    /// upstream CA account's).
    pub async fn caa_for(
        &self,
        identifier: &Identifier,
        identities: &[String],
        requester: Requester<'_>,
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
            return evaluate(identities, requester, identifier, &candidate, &records);
        }
        Ok(())
    }
}

fn evaluate(
    identities: &[String],
    requester: Requester<'_>,
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
    // Properties that name this CA, and why each of those that do not
    // authorize this requester does not.
    let mut bound = Vec::new();
    for record in &relevant {
        let Some(property) = issue_value(&record.value) else {
            continue;
        };
        if !identities.contains(&property.issuer) {
            continue;
        }
        match property.refusal(requester) {
            None => return Ok(()),
            Some(why) => bound.push(why),
        }
    }
    if !bound.is_empty() {
        return Err(refuse(format!(
            "name this CA only {} (RFC 8657), so they do not authorize issuance for {}",
            bound.join("; or "),
            identifier.value
        )));
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

/// An `issue`/`issuewild` property value (RFC 8659 §4.2): the issuer and
/// its parameters, tags lowercased.
struct IssueValue {
    issuer: String,
    parameters: Parameters,
}

/// Parses a property value; `None` when it names no issuer or breaks the
/// syntax, which authorizes no one (RFC 8659 §4.2).
fn issue_value(value: &[u8]) -> Option<IssueValue> {
    let (issuer, parameters) = split_issue_value(std::str::from_utf8(value).ok()?)?;
    Some(IssueValue {
        issuer,
        parameters: parameters.ok()?,
    })
}

/// An issue-value's parameters, `(tag, value)` in order.
pub(super) type Parameters = Vec<(String, String)>;

/// An issue-value as RFC 8659 §4.2 writes it, the syntax CAA properties
/// and dns-persist-01 records share: its issuer-domain-name (lowercased,
/// without a trailing dot; none when absent or malformed), and its
/// parameters, tags lowercased, or why they break the syntax.
pub(super) fn split_issue_value(text: &str) -> Option<(String, Result<Parameters, String>)> {
    let (issuer, rest) = match text.split_once(';') {
        Some((issuer, rest)) => (issuer, Some(rest)),
        None => (text, None),
    };
    let issuer = issuer_domain(issuer.as_bytes())?;
    let parameters = match rest {
        // `issuer;` is grammatical; `;;` and a trailing `;` after a
        // parameter are not.
        Some(rest) if !rest.trim_matches([' ', '\t']).is_empty() => {
            rest.split(';').map(parameter).collect()
        }
        _ => Ok(Vec::new()),
    };
    Some((issuer, parameters))
}

/// One `tag=value` parameter (RFC 8659 §4.2): the tag letters and digits
/// with inner hyphens, the value visible ASCII but `;`.
fn parameter(part: &str) -> Result<(String, String), String> {
    let part = part.trim_matches([' ', '\t']);
    if part.is_empty() {
        return Err("an empty parameter (a stray or trailing \";\")".into());
    }
    let Some((tag, value)) = part.split_once('=') else {
        return Err(format!("parameter {part:?} has no \"=\""));
    };
    let tag = tag.trim_matches([' ', '\t']).to_ascii_lowercase();
    let value = value.trim_matches([' ', '\t']);
    let tag_ok = !tag.is_empty()
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !tag.starts_with('-')
        && !tag.ends_with('-');
    if !tag_ok {
        return Err(format!(
            "parameter tag {tag:?} is not letters, digits and inner hyphens"
        ));
    }
    if !value
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b';')
    {
        return Err(format!(
            "the value of {tag} has a space, control or non-ASCII character"
        ));
    }
    Ok((tag, value.to_string()))
}

impl IssueValue {
    fn values(&self, tag: &str) -> Vec<&str> {
        self.parameters
            .iter()
            .filter(|(t, _)| t == tag)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Why this property, which names this CA, does not authorize
    /// `requester`; none when it does.
    fn refusal(&self, requester: Requester<'_>) -> Option<String> {
        match self.values("accounturi").as_slice() {
            [] => {}
            [uri] if requester.account_url == Some(*uri) => {}
            [uri] => return Some(format!("for the account {uri}")),
            _ => return Some("with accounturi given twice, which binds to no account".into()),
        }
        match self.values("validationmethods").as_slice() {
            [] => None,
            [list] => {
                let methods: Vec<&str> = list.split(',').filter(|m| !m.is_empty()).collect();
                if methods.is_empty() {
                    return Some("with an empty validationmethods, which allows no method".into());
                }
                match requester.method {
                    Some(method) if !methods.contains(&method) => {
                        Some(format!("for validation by {}", methods.join(", ")))
                    }
                    _ => None,
                }
            }
            _ => Some("with validationmethods given twice, which allows no method".into()),
        }
    }
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
        v.check_caa(&Identifier::dns(name).unwrap(), Requester::default())
            .await
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
    async fn unknown_parameters_and_case_do_not_matter_but_empty_issuer_forbids() {
        let dns = lab_dns().await;
        // (accounturi and validationmethods do: see the RFC 8657 test.)
        dns.add_caa("a.example.com", 0, "ISSUE", " AcmeHub.Local; policy=ev");
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
        v.check_caa(
            &Identifier::dns("example.com").unwrap(),
            Requester::default(),
        )
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

    /// RFC 8657 Appendix A and the cases derived from its rules: this CA is
    /// acmehub.local, the requesting account .../account/1234.
    #[tokio::test]
    async fn account_and_method_bindings_authorize_only_what_they_name() {
        const ME: &str = "https://hub.test/acme/default/account/1234";
        let dns = lab_dns().await;
        let v = Validator::new(&lab_config(&dns)).unwrap();
        let check = |name: &'static str, method: Option<&'static str>| {
            let v = v.clone();
            async move {
                let requester = Requester {
                    account_url: Some(ME),
                    method,
                };
                v.check_caa(&Identifier::dns(name).unwrap(), requester)
                    .await
            }
        };
        let add = |name: &str, value: &str| dns.add_caa(name, 0, "issue", value);
        add(
            "mine.test",
            "acmehub.local; accounturi=https://hub.test/acme/default/account/1234",
        );
        add(
            "mine.test",
            "acmehub.local; accounturi=https://hub.test/acme/default/account/2345",
        );
        check("mine.test", Some("dns-01")).await.unwrap();
        add(
            "theirs.test",
            "acmehub.local; accounturi=https://hub.test/acme/default/account/9999",
        );
        let err = check("theirs.test", Some("dns-01")).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Caa);
        assert!(
            err.detail
                .contains("only for the account https://hub.test/acme/default/account/9999"),
            "{}",
            err.detail
        );
        // Properties add up: an unbound one beside it authorizes.
        add(
            "both.test",
            "acmehub.local; accounturi=https://hub.test/acme/default/account/9999",
        );
        add("both.test", "acmehub.local");
        check("both.test", Some("dns-01")).await.unwrap();
        // Methods: only those listed; none known yet (newOrder) passes.
        add(
            "methods.test",
            "acmehub.local; accounturi=https://hub.test/acme/default/account/1234; validationmethods=dns-01,ca-foo",
        );
        check("methods.test", Some("dns-01")).await.unwrap();
        check("methods.test", None).await.unwrap();
        let err = check("methods.test", Some("http-01")).await.unwrap_err();
        assert!(
            err.detail.contains("only for validation by dns-01, ca-foo"),
            "{}",
            err.detail
        );
        add(
            "persist.test",
            "acmehub.local; validationmethods=dns-persist-01",
        );
        check("persist.test", Some("dns-persist-01")).await.unwrap();
        check("persist.test", Some(PRE_AUTHORIZED))
            .await
            .unwrap_err();
        // Repeated parameters and an empty list bind to nothing.
        add(
            "twice.test",
            "acmehub.local; accounturi=https://hub.test/acme/default/account/1234; accounturi=https://hub.test/acme/default/account/1234",
        );
        check("twice.test", Some("dns-01")).await.unwrap_err();
        add("empty.test", "acmehub.local; validationmethods=");
        check("empty.test", Some("dns-01")).await.unwrap_err();
        // Our account named under another issuer is not ours.
        add(
            "other.test",
            "other.example; accounturi=https://hub.test/acme/default/account/1234",
        );
        check("other.test", Some("dns-01")).await.unwrap_err();
        // A broken property authorizes no one; a plain one beside it does.
        add("broken.test", "acmehub.local; accounturi");
        check("broken.test", Some("dns-01")).await.unwrap_err();
        add("broken.test", "acmehub.local;");
        check("broken.test", Some("dns-01")).await.unwrap();
    }
}
