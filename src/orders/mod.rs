//! The registration authority: the order state machine shared by every
//! issuer. It decides (accounts, orders, challenges, finalization,
//! revocation) and asks the store to record each transition; it never parses
//! HTTP and never writes SQL.

mod accounts;
mod finalize;
mod keys;
pub mod limits;
mod revoke;

use std::net::IpAddr;
use std::sync::Arc;

pub use accounts::*;
pub use finalize::*;
pub use revoke::*;

use crate::audit::{self, Actor};
use crate::error::{Error, ErrorKind, Subproblem};
use crate::hub::Hub;
use crate::policy::{ChallengeType, Identifier, IdentifierKind, Limit, ValidationMode};
use crate::store::{
    Account, Authorization, AuthzStatus, Challenge, ChallengeStatus, Instance, Issuer, NewAuthz,
    NewOrder, Order, OrderStatus, UpstreamOrderState,
};
use crate::util::{b64, now, random_bytes};
use crate::validation::{PRE_AUTHORIZED, Requester};
use limits::Subject;

/// Most identifiers one order may carry.
pub const MAX_IDENTIFIERS: usize = 100;

/// What a newOrder request asks for, already decoded.
#[derive(Debug, Clone)]
pub struct OrderRequest {
    pub identifiers: Vec<(String, String)>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub replaces: Option<String>,
    pub profile: Option<String>,
}

/// The challenge types offered for an identifier (RFC 8555 §8, RFC 8737,
/// RFC 8738: no DNS challenge for IP addresses; wildcards only by DNS).
pub fn offered_challenges(identifier: &Identifier, wildcard: bool) -> Vec<ChallengeType> {
    match identifier.kind {
        IdentifierKind::Ip => vec![ChallengeType::Http01, ChallengeType::TlsAlpn01],
        IdentifierKind::Dns if wildcard => vec![
            ChallengeType::Dns01,
            ChallengeType::DnsAccount01,
            ChallengeType::DnsPersist01,
        ],
        IdentifierKind::Dns => ChallengeType::ALL.to_vec(),
    }
}

/// Challenge types as a list reads: `http-01, dns-01`.
fn challenge_names(types: &[ChallengeType]) -> String {
    types
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses and checks the identifiers of a new order: each must be well formed,
/// duplicates are dropped, and every refused one is reported as a subproblem.
pub fn parse_identifiers(requested: &[(String, String)]) -> Result<Vec<Identifier>, Error> {
    if requested.is_empty() {
        return Err(Error::malformed(
            "the order must contain at least one identifier",
        ));
    }
    if requested.len() > MAX_IDENTIFIERS {
        return Err(Error::new(
            ErrorKind::RejectedIdentifier,
            format!("an order may contain at most {MAX_IDENTIFIERS} identifiers"),
        ));
    }
    let mut identifiers = Vec::with_capacity(requested.len());
    let mut refused = Vec::new();
    for (kind, value) in requested {
        match Identifier::parse(kind, value) {
            Ok(id) => identifiers.push(id),
            Err(e) => refused.push(Subproblem {
                kind: e.kind,
                detail: e.detail,
                identifier: (&Identifier {
                    kind: kind.parse().unwrap_or(IdentifierKind::Dns),
                    value: value.clone(),
                })
                    .into(),
            }),
        }
    }
    if !refused.is_empty() {
        let kind = refused[0].kind;
        let detail = if refused.len() == 1 {
            refused[0].detail.clone()
        } else {
            format!(
                "{} identifiers were refused; see subproblems",
                refused.len()
            )
        };
        return Err(Error::new(kind, detail).with_subproblems(refused));
    }
    identifiers.sort();
    identifiers.dedup();
    Ok(identifiers)
}

/// Certificate lifetime at an instance, in days.
pub fn validity_days(hub: &Hub, instance: &Instance) -> i64 {
    instance
        .cert_validity_days
        .unwrap_or(i64::from(hub.config.ca.leaf_validity_days))
}

/// The lifetime of a certificate the local CA issues for an order: its
/// profile's when it names one, else the instance's.
pub fn order_validity_days(hub: &Hub, instance: &Instance, profile: Option<&str>) -> i64 {
    profile
        .and_then(|p| hub.config.ca.profiles.get(p))
        .map(|p| i64::from(p.leaf_validity_days))
        .unwrap_or_else(|| validity_days(hub, instance))
}

/// What an instance's directory offers of the CAs behind it.
#[derive(Debug, Default)]
pub struct Offer {
    /// ACME profiles (draft-ietf-acme-profiles §3), name to description.
    pub profiles: std::collections::BTreeMap<String, String>,
    /// The CAs' CAA identities (RFC 8555 §9.7.1 `caaIdentities`).
    pub caa_identities: Vec<String>,
}

/// The local CA's profiles and the hub's CAA identities, or for a relaying
/// instance those of its CA accounts (of its environment, profiles as they
/// were last tested), read once.
pub async fn offer(hub: &Hub, instance: &Instance) -> Result<Offer, Error> {
    match instance.issuer {
        Issuer::Local => Ok(Offer {
            profiles: hub
                .config
                .ca
                .profiles
                .iter()
                .map(|(name, p)| (name.clone(), p.description.clone()))
                .collect(),
            caa_identities: hub.config.validation.caa_identities.clone(),
        }),
        Issuer::Upstream => {
            let mut offer = Offer::default();
            let mut identities = std::collections::BTreeSet::new();
            for account in hub.store.ca_accounts(&instance.id).await? {
                if account.environment == instance.environment {
                    for (name, description) in account.profiles {
                        offer.profiles.entry(name).or_insert(description);
                    }
                    identities.extend(account.caa_identities);
                }
            }
            offer.caa_identities = identities.into_iter().collect();
            Ok(offer)
        }
    }
}

/// `invalidProfile` unless the instance offers `profile`.
pub(crate) async fn check_profile(
    hub: &Hub,
    instance: &Instance,
    profile: &str,
) -> Result<(), Error> {
    let offered = offer(hub, instance).await?.profiles;
    if offered.contains_key(profile) {
        return Ok(());
    }
    let choice = if offered.is_empty() {
        "this instance offers no profiles".to_string()
    } else {
        format!(
            "the profiles offered are {}",
            offered.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    };
    Err(Error::new(
        ErrorKind::InvalidProfile,
        format!("profile {profile:?} is not offered: {choice}"),
    ))
}

/// Whether the order is relayed upstream. For an upstream instance: an IP
/// address is `rejectedIdentifier` (the hub answers upstream challenges
/// with dns-01); names CAA forbids every CA account to issue for are the
/// client's `caa` error, one subproblem per name; otherwise no account
/// that can serve it is `There is no matching ACME account`.
async fn check_issuer(
    hub: &Hub,
    instance: &Instance,
    identifiers: &[Identifier],
    profile: Option<&str>,
) -> Result<bool, Error> {
    match instance.issuer {
        Issuer::Local => return Ok(false),
        Issuer::Upstream => {}
    }
    let ips: Vec<Subproblem> = identifiers
        .iter()
        .filter(|i| i.kind == IdentifierKind::Ip)
        .map(|ip| Subproblem {
            kind: ErrorKind::RejectedIdentifier,
            detail: format!(
                "instance {:?} issues from upstream CA accounts, whose challenges the hub \
                 answers with dns-01, which cannot prove the IP address {}",
                instance.name, ip.value
            ),
            identifier: ip.into(),
        })
        .collect();
    if let Some(first) = ips.first() {
        return Err(
            Error::new(ErrorKind::RejectedIdentifier, first.detail.clone()).with_subproblems(ips),
        );
    }
    let accounts = hub.store.ca_accounts(&instance.id).await?;
    let serving = crate::issuance::upstream::serving_accounts(
        hub,
        &accounts,
        instance.environment,
        identifiers,
        profile,
    )
    .await;
    if !serving.accounts.is_empty() {
        return Ok(true);
    }
    let unmatched = crate::issuance::no_matching_account(instance, &serving.reasons);
    if serving.caa_refusals.is_empty() {
        return Err(unmatched);
    }
    // The names are what stops the order: the client's error, not ours.
    // Those CAA forbids to every account that fits, or (when each name has
    // some account, but no account has them all) each name CAA forbids to
    // some account.
    let everywhere: Vec<&(Identifier, Vec<String>)> = serving
        .caa_refusals
        .iter()
        .filter(|(_, why)| why.len() == serving.considered)
        .collect();
    let named: Vec<&(Identifier, Vec<String>)> = if everywhere.is_empty() {
        serving.caa_refusals.iter().collect()
    } else {
        everywhere
    };
    let subproblems: Vec<Subproblem> = named
        .into_iter()
        .map(|(identifier, why)| Subproblem {
            kind: ErrorKind::Caa,
            detail: why.join("; "),
            identifier: identifier.into(),
        })
        .collect();
    Err(Error::new(ErrorKind::Caa, unmatched.detail).with_subproblems(subproblems))
}

/// The challenge types an instance offers for an identifier; `rejectedIdentifier`
/// when none of the types it allows can validate it.
fn allowed_challenges(
    instance: &Instance,
    identifier: &Identifier,
    wildcard: bool,
) -> Result<Vec<ChallengeType>, Error> {
    let offered: Vec<ChallengeType> = offered_challenges(identifier, wildcard)
        .into_iter()
        .filter(|c| instance.allowed_challenges.contains(c))
        .collect();
    if offered.is_empty() {
        let name = if wildcard {
            format!("*.{}", identifier.value)
        } else {
            identifier.value.clone()
        };
        return Err(Error::new(
            ErrorKind::RejectedIdentifier,
            format!(
                "instance {:?} allows only [{}], and none of these can validate {name}",
                instance.name,
                challenge_names(&instance.allowed_challenges)
            ),
        ));
    }
    Ok(offered)
}

/// RFC 8555 §7.4: creates an order, reusing the account's valid authorizations.
/// The account's access-key policy must allow every identifier; a
/// `pre-authorized` policy makes the new authorizations valid at once.
pub async fn new_order(
    hub: &Arc<Hub>,
    instance: &Instance,
    account: &Account,
    request: OrderRequest,
    client: Option<IpAddr>,
) -> Result<Order, Error> {
    let result = create_order(hub, instance, account, &request, client).await;
    if let Err(error) = &result {
        record_refusal(hub, instance, account, &request.identifiers, client, error).await;
    }
    result
}

/// Every refused newOrder is an audit event (`order.refuse`: who asked,
/// with which access key, from where, for what, and why) and a log line,
/// so "who asked for a name they may not have" can be answered; at most
/// [`crate::hub::REFUSAL_EVENTS_PER_MINUTE`] events per account a minute,
/// so a flood cannot fill the log. Failures of the hub itself are not
/// refusals: they are logged where they happen.
async fn record_refusal(
    hub: &Hub,
    instance: &Instance,
    account: &Account,
    requested: &[(String, String)],
    client: Option<IpAddr>,
    error: &Error,
) {
    if error.kind == ErrorKind::ServerInternal {
        return;
    }
    let reason = error.kind.name();
    metrics::counter!("acmehub_order_refusals_total", "reason" => reason).increment(1);
    if !hub.refusal_events.allow(&account.id, now()) {
        tracing::debug!(account = %account.id, reason, "order refused (audit event throttled)");
        return;
    }
    tracing::info!(event = "order.refuse", instance = %instance.name, account = %account.id,
        access_key = account.access_key_id.as_deref().unwrap_or(""),
        client = %client.map(|c| c.to_string()).unwrap_or_default(), reason,
        detail = %error.detail, "order refused");
    let clip = |text: &str, max: usize| text.chars().take(max).collect::<String>();
    // Requested values are the client's text: keep what an operator needs
    // to read, not whatever length a client sent.
    let identifiers: Vec<serde_json::Value> = requested
        .iter()
        .take(100)
        .map(|(kind, value)| serde_json::json!({"type": clip(kind, 16), "value": clip(value, 255)}))
        .collect();
    audit::record(
        hub,
        Some(&instance.id),
        &Actor::Account(account.id.clone()),
        "order.refuse",
        ("account", &account.id),
        serde_json::json!({
            "reason": reason,
            "detail": error.detail,
            "identifiers": identifiers,
            "access_key": account.access_key_id,
            "client": client.map(|c| c.to_string()),
        }),
    )
    .await;
}

async fn create_order(
    hub: &Arc<Hub>,
    instance: &Instance,
    account: &Account,
    request: &OrderRequest,
    client: Option<IpAddr>,
) -> Result<Order, Error> {
    let identifiers = parse_identifiers(&request.identifiers)?;
    let policy = crate::tenancy::access_keys::account_policy(hub, instance, account).await?;
    if let Some(policy) = &policy {
        crate::tenancy::access_keys::check_identifiers(policy, &identifiers)?;
    }
    if let Some(profile) = &request.profile {
        check_profile(hub, instance, profile).await?;
    }
    let relayed = check_issuer(hub, instance, &identifiers, request.profile.as_deref()).await?;
    let account_subject = [Subject::Account(&account.id)];
    limits::check(hub, instance, Limit::FailedValidations, &account_subject).await?;
    let pre_authorized = policy
        .as_ref()
        .is_some_and(|p| p.validation == ValidationMode::PreAuthorized);
    let now = now();
    let validity_days = order_validity_days(hub, instance, request.profile.as_deref());
    // A relayed order's upstream CA decides its own bounds; a local one
    // cannot outlive the intermediate that signs it.
    let ca_expires = (!relayed).then(|| hub.ca.intermediate_not_after().unix_timestamp());
    check_requested_validity(
        request.not_before,
        request.not_after,
        now,
        validity_days,
        ca_expires,
    )?;
    if let Some(replaces) = &request.replaces {
        crate::ca::parse_ari_cert_id(replaces)?;
        match hub
            .store
            .certificate_by_ari_id(&account.instance_id, replaces)
            .await?
        {
            Some(cert) if cert.account_id == account.id => {}
            _ => {
                return Err(Error::malformed(format!(
                    "replaces names {replaces:?}, which is not a certificate of this account"
                )));
            }
        }
    }
    let order_expires = now + hub.config.acme.order_lifetime_secs as i64;
    let account_url = hub.account_url(&instance.name, &account.id);
    let mut authorizations = Vec::with_capacity(identifiers.len());
    for identifier in &identifiers {
        let wildcard = identifier.is_wildcard();
        let base = Identifier {
            kind: identifier.kind,
            value: identifier.base_name().to_string(),
        };
        if pre_authorized {
            // The policy vouches for control, but the domain's CAA records
            // still decide whether this CA may issue (RFC 8659). A relayed
            // order is checked by the upstream CA that issues it.
            if identifier.kind == IdentifierKind::Dns && !relayed {
                let requester = Requester {
                    account_url: Some(&account_url),
                    method: Some(PRE_AUTHORIZED),
                };
                hub.validator
                    .check_caa(identifier, requester)
                    .await
                    .map_err(|e| {
                        Error::new(e.kind, e.detail.clone()).with_subproblems(vec![Subproblem {
                            kind: e.kind,
                            detail: e.detail,
                            identifier: identifier.into(),
                        }])
                    })?;
            }
            authorizations.push(NewAuthz::Create {
                identifier: base,
                wildcard,
                expires_at: order_expires,
                challenges: Vec::new(),
                valid: true,
            });
            continue;
        }
        let mut challenges = allowed_challenges(instance, &base, wildcard)?;
        // dns-persist-01 needs a name for this CA to put in the record.
        if hub.validator.issuer_domain_names().is_empty() {
            challenges.retain(|c| *c != ChallengeType::DnsPersist01);
        }
        // Reuse only an authorization that outlives the new order's validity window start.
        if let Some(id) = hub
            .store
            .reusable_authz(&account.id, &base, wildcard, now + 3600, &challenges)
            .await?
        {
            authorizations.push(NewAuthz::Reuse(id));
            continue;
        }
        let challenges = challenges
            .into_iter()
            .map(|c| (c, b64(&random_bytes::<32>())))
            .collect();
        authorizations.push(NewAuthz::Create {
            identifier: base,
            wildcard,
            expires_at: order_expires,
            challenges,
            valid: false,
        });
    }
    let mut subjects = vec![Subject::Account(&account.id)];
    subjects.extend(client.map(Subject::Ip));
    limits::charge(hub, instance, Limit::Orders, &subjects).await?;
    let order = hub
        .store
        .create_order(&NewOrder {
            relayed,
            instance_id: account.instance_id.clone(),
            account_id: account.id.clone(),
            identifiers,
            not_before: request.not_before,
            not_after: request.not_after,
            expires_at: order_expires,
            replaces: request.replaces.clone(),
            profile: request.profile.clone(),
            authorizations,
        }, |order| {
            Some(audit::event(
                Some(&instance.id),
                &Actor::Account(account.id.clone()),
                "order.create",
                ("order", &order.id),
                serde_json::json!({"identifiers": order.identifiers, "status": order.status.as_str()}),
            ))
        })
        .await?;
    if relayed {
        // Upstream work starts now, while the client is still busy (DESIGN).
        crate::issuance::relay::spawn(hub.clone(), order.id.clone());
    }
    metrics::counter!("acmehub_orders_created_total").increment(1);
    tracing::info!(order = %order.id, account = %account.id, identifiers = order.identifiers.len(), status = order.status.as_str(), "order created");
    Ok(order)
}

/// The status a client sees: pending and ready orders past their expiry are invalid.
pub fn effective_order_status(order: &Order, now: i64) -> OrderStatus {
    match order.status {
        OrderStatus::Pending | OrderStatus::Ready if order.expires_at <= now => {
            OrderStatus::Invalid
        }
        s => s,
    }
}

/// The status a client sees: pending and valid authorizations past their expiry are expired.
pub fn effective_authz_status(status: AuthzStatus, expires_at: i64, now: i64) -> AuthzStatus {
    match status {
        AuthzStatus::Pending | AuthzStatus::Valid if expires_at <= now => AuthzStatus::Expired,
        s => s,
    }
}

/// RFC 8555 §7.5.1: the client says it is ready; validation starts in the
/// background and the challenge is `processing` until it ends. The answer
/// waits for the outcome up to `[validation] answer_within_ms`: a
/// validation that ends by then is answered `valid` or `invalid` (and the
/// order is already `ready` when the client next asks), which spares the
/// client a round of polls and the hub the requests; a slower one is
/// answered `processing` and goes on. Returns the challenge and its
/// authorization as they now stand, when that is known without reading
/// them again.
pub async fn respond_to_challenge(
    hub: &Arc<Hub>,
    instance: &Instance,
    account: &Account,
    challenge_id: &str,
) -> Result<Option<(Challenge, Authorization)>, Error> {
    let (challenge, authz) = account_challenge(hub, account, challenge_id).await?;
    if challenge.status != ChallengeStatus::Pending {
        // Repeating the request is harmless (RFC 8555 §7.5.1): answer with its state.
        return Ok(Some((challenge, authz)));
    }
    if !instance.allowed_challenges.contains(&challenge.kind) {
        return Err(Error::unauthorized(format!(
            "instance {:?} no longer allows {} challenges; answer one of [{}]",
            instance.name,
            challenge.kind,
            challenge_names(&instance.allowed_challenges)
        )));
    }
    if effective_authz_status(authz.status, authz.expires_at, now()) != AuthzStatus::Pending {
        return Err(Error::malformed(format!(
            "the authorization is {}, so its challenges can no longer be answered",
            effective_authz_status(authz.status, authz.expires_at, now()).as_str()
        )));
    }
    limits::check(
        hub,
        instance,
        Limit::FailedValidations,
        &[Subject::Account(&account.id)],
    )
    .await?;
    if !hub.store.start_challenge(challenge_id, now()).await? {
        // Another request started it: its state has to be read.
        return Ok(None);
    }
    let challenge = Challenge {
        status: ChallengeStatus::Processing,
        ..challenge
    };
    let shown = (challenge.clone(), authz.clone());
    let (finished, outcome) = tokio::sync::oneshot::channel();
    let wait = std::time::Duration::from_millis(hub.config.validation.answer_within_ms);
    let (hub, instance) = (hub.clone(), instance.clone());
    in_background(challenge_id.to_string(), async move {
        validate_challenge(&hub, challenge, authz, Some(instance), Some(finished)).await
    });
    match tokio::time::timeout(wait, outcome).await {
        Ok(Ok(now_shown)) => Ok(Some(now_shown)),
        // Ended by then, but what this validation found is not what the
        // records say (another worker recorded the challenge first, its
        // authorization had moved on, or the write failed): read them.
        Ok(Err(_)) => Ok(None),
        Err(_) => Ok(Some(shown)),
    }
}

/// Where a validation reports the challenge and authorization it recorded.
type Finished = tokio::sync::oneshot::Sender<(Challenge, Authorization)>;

/// The challenge `id` and its authorization, when they belong to `account`.
pub async fn account_challenge(
    hub: &Hub,
    account: &Account,
    id: &str,
) -> Result<(Challenge, Authorization), Error> {
    hub.store
        .challenge(&account.instance_id, id)
        .await?
        .filter(|(_, a)| a.account_id == account.id)
        .ok_or_else(|| Error::not_found("no such challenge for this account"))
}

/// Runs the validation of a challenge left `processing` (by a restart) in
/// the background and records its outcome.
pub fn spawn_validation(hub: Arc<Hub>, challenge_id: String, instance_id: String) {
    in_background(challenge_id.clone(), async move {
        match hub.store.challenge(&instance_id, &challenge_id).await? {
            Some((challenge, authz)) if challenge.status == ChallengeStatus::Processing => {
                validate_challenge(&hub, challenge, authz, None, None).await
            }
            _ => Ok(()),
        }
    });
}

/// Runs the validation of challenge `challenge_id` in the background; a
/// failure to record its outcome is logged (the challenge stays
/// `processing`, and the next start-up validates it again).
fn in_background(
    challenge_id: String,
    validation: impl std::future::Future<Output = Result<(), Error>> + Send + 'static,
) {
    tokio::spawn(async move {
        if let Err(e) = validation.await {
            tracing::error!(challenge = %challenge_id, error = %e, "could not record validation outcome");
        }
    });
}

/// Validates a `processing` challenge and records the outcome; `instance`
/// is read when the caller does not have it. The challenge and
/// authorization as recorded go to `finished`, if given.
async fn validate_challenge(
    hub: &Hub,
    challenge: Challenge,
    authz: Authorization,
    instance: Option<Instance>,
    finished: Option<Finished>,
) -> Result<(), Error> {
    let challenge_id = challenge.id.as_str();
    let instance_id = authz.instance_id.as_str();
    let account = hub
        .store
        .account(instance_id, &authz.account_id)
        .await?
        .ok_or_else(|| Error::internal("validating", "authorization without account"))?;
    let key_authorization = format!("{}.{}", challenge.token, account.key_thumbprint);
    let instance = match instance {
        Some(instance) => Some(instance),
        None => hub.store.instance_by_ref(instance_id).await?,
    };
    let relayed = instance
        .as_ref()
        .is_some_and(|i| i.issuer == Issuer::Upstream);
    // The instance says whether its targets may be private (an instance
    // that faces the Internet says no); the hub's validator has the default.
    let allow_private = instance
        .as_ref()
        .map_or(hub.config.validation.allow_private_targets, |i| {
            crate::tenancy::outbound::private_targets_allowed(hub, i)
        });
    let validator = if allow_private == hub.validator.policy().allow_private {
        std::borrow::Cow::Borrowed(&hub.validator)
    } else {
        std::borrow::Cow::Owned(hub.validator.clone().with_private_targets(allow_private))
    };
    // A failure on the upstream side is not the client's failed validation.
    let mut upstream_caused = false;
    let account_url = instance
        .as_ref()
        .map_or_else(String::new, |i| hub.account_url(&i.name, &account.id));
    // The name as ordered: a wildcard's DNS proofs sit at its base name,
    // and dns-persist-01 must know it was a wildcard.
    let ordered = Identifier {
        kind: authz.identifier.kind,
        value: if authz.wildcard {
            format!("*.{}", authz.identifier.value)
        } else {
            authz.identifier.value.clone()
        },
    };
    let outcome = match validator
        .validate(
            challenge.kind,
            &ordered,
            &challenge.token,
            &key_authorization,
            &account_url,
        )
        .await
    {
        // Relayed: the client's proof and the upstream CA's authorization
        // both (CAA is the upstream CA's to check, for its own identities).
        Ok(()) if relayed => {
            let upstream = upstream_authorized(hub, &authz.id).await;
            upstream_caused = upstream.is_err();
            upstream
        }
        Ok(()) if authz.identifier.kind == IdentifierKind::Dns => {
            let requester = Requester::validated(&account_url, challenge.kind);
            hub.validator.check_caa(&ordered, requester).await
        }
        other => other,
    };
    let at = now();
    let valid_until = at + hub.config.acme.authz_valid_secs as i64;
    let error = outcome.as_ref().err().map(|e| {
        crate::error::Problem::from_error(&Error {
            subproblems: vec![Subproblem {
                kind: e.kind,
                detail: e.detail.clone(),
                identifier: (&authz.identifier).into(),
            }],
            ..e.clone()
        })
        .to_json()
    });
    metrics::counter!("acmehub_challenge_outcomes_total", "type" => challenge.kind.as_str(),
        "outcome" => if error.is_some() { "invalid" } else { "valid" })
    .increment(1);
    tracing::info!(challenge = %challenge_id, authz = %authz.id, r#type = %challenge.kind,
        identifier = %authz.identifier, valid = error.is_none(), "challenge validated");
    // Shown only when the authorization took this outcome: otherwise it had
    // moved on (another challenge of it, a deactivation), and the handler
    // reads what it now is.
    let recorded_here = match hub
        .store
        .finish_challenge(challenge_id, &authz.id, error.as_deref(), valid_until, at)
        .await
    {
        Ok(authz_took_it) => authz_took_it,
        Err(crate::store::StoreError::Guard) => false,
        Err(e) => return Err(e.into()),
    };
    if error.is_some() && !upstream_caused {
        if let Some(instance) = &instance {
            // Counted only; the limit is enforced on the account's next
            // attempt (counted before the answer, which that attempt follows).
            let _ = limits::charge(
                hub,
                instance,
                Limit::FailedValidations,
                &[Subject::Account(&account.id)],
            )
            .await;
        }
    }
    if let (true, Some(finished)) = (recorded_here, finished) {
        let _ = finished.send(recorded(challenge, authz, error, valid_until, at));
    }
    Ok(())
}

/// A challenge and its authorization as `finish_challenge` recorded them
/// (when the authorization took the outcome).
fn recorded(
    challenge: Challenge,
    authz: Authorization,
    error: Option<String>,
    valid_until: i64,
    at: i64,
) -> (Challenge, Authorization) {
    let valid = error.is_none();
    let challenge = Challenge {
        status: if valid {
            ChallengeStatus::Valid
        } else {
            ChallengeStatus::Invalid
        },
        validated_at: valid.then_some(at),
        error,
        ..challenge
    };
    let authz = if valid {
        Authorization {
            status: AuthzStatus::Valid,
            expires_at: valid_until,
            ..authz
        }
    } else {
        Authorization {
            status: AuthzStatus::Invalid,
            ..authz
        }
    };
    (challenge, authz)
}

/// How long a relayed downstream challenge waits for the upstream CA.
/// Longer than a failover through a few accounts takes.
const UPSTREAM_AUTHZ_WAIT_SECS: i64 = 900;

/// Waits until the upstream side of the authorization's order is authorized
/// (the upstream order is ready, or further); an error when it failed or
/// did not get there in time.
async fn upstream_authorized(hub: &Hub, authz_id: &str) -> Result<(), Error> {
    let Some(order_id) = hub.store.order_of_authz(authz_id).await? else {
        return Ok(());
    };
    let deadline = now() + UPSTREAM_AUTHZ_WAIT_SECS;
    loop {
        let Some(u) = hub.store.upstream_order(&order_id).await? else {
            // Not relayed after all (issued locally): the client's proof is enough.
            return Ok(());
        };
        match u.state {
            UpstreamOrderState::Ready
            | UpstreamOrderState::Finalizing
            | UpstreamOrderState::Valid => return Ok(()),
            UpstreamOrderState::Failed => {
                return Err(Error::new(
                    ErrorKind::ServerInternal,
                    format!(
                        "the upstream CA did not authorize this name: {}",
                        u.error.unwrap_or_default()
                    ),
                ));
            }
            _ if now() >= deadline => {
                return Err(Error::new(
                    ErrorKind::ServerInternal,
                    format!(
                        "the upstream CA did not authorize this name within {UPSTREAM_AUTHZ_WAIT_SECS} s"
                    ),
                ));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

/// RFC 8555 §7.5.2: the client gives up an authorization.
pub async fn deactivate_authorization(
    hub: &Hub,
    account: &Account,
    authz_id: &str,
) -> Result<(), Error> {
    let authz = hub
        .store
        .authorization(&account.instance_id, authz_id)
        .await?
        .filter(|a| a.account_id == account.id)
        .ok_or_else(|| Error::not_found("no such authorization for this account"))?;
    match hub.store.deactivate_authz(&authz.id).await {
        Ok(()) => Ok(()),
        Err(crate::store::StoreError::Guard) => Err(Error::malformed(format!(
            "only pending or valid authorizations can be deactivated; this one is {}",
            authz.status.as_str()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// How far back a requested `notBefore` may lie (clock skew, backdating).
const NOT_BEFORE_PAST_SECS: i64 = 3600;
/// How far ahead a requested `notBefore` may lie.
const NOT_BEFORE_FUTURE_SECS: i64 = 30 * 86400;

/// RFC 8555 §7.1.3 and §7.4: the `notBefore`/`notAfter` a client asks for
/// must make a certificate this CA can sign: not ending in the past, not
/// reversed, not longer than the instance's lifetime of `validity_days`,
/// and not outliving the issuing CA (`ca_expires`, for local issuance).
/// Checked at newOrder, so a refused window is never stored and never
/// reaches the signer.
fn check_requested_validity(
    not_before: Option<i64>,
    not_after: Option<i64>,
    now: i64,
    validity_days: i64,
    ca_expires: Option<i64>,
) -> Result<(), Error> {
    let at = crate::util::rfc3339;
    if let Some(nb) = not_before {
        if nb < now - NOT_BEFORE_PAST_SECS || nb > now + NOT_BEFORE_FUTURE_SECS {
            return Err(Error::malformed(format!(
                "notBefore {} must lie between one hour ago and 30 days from now",
                at(nb)
            )));
        }
    }
    let Some(na) = not_after else {
        return Ok(());
    };
    if na <= now {
        return Err(Error::malformed(format!(
            "notAfter {} is in the past: a certificate must end after it is issued",
            at(na)
        )));
    }
    if let Some(nb) = not_before {
        if na <= nb {
            return Err(Error::malformed(format!(
                "notAfter {} must be later than notBefore {}",
                at(na),
                at(nb)
            )));
        }
    }
    let start = not_before.unwrap_or(now);
    if na - start > validity_days * 86400 {
        return Err(Error::malformed(format!(
            "notAfter {} asks for more than this instance's {validity_days} day certificate lifetime",
            at(na)
        )));
    }
    if let Some(expires) = ca_expires.filter(|&e| na > e) {
        return Err(Error::malformed(format!(
            "notAfter {} is beyond the issuing CA's expiry {}; ask for an earlier notAfter",
            at(na),
            at(expires)
        )));
    }
    Ok(())
}

/// Work a restart interrupted: validations in flight, relayed orders, and
/// certificates whose signing was recorded but not finished. A process that
/// owns its database (SQLite) takes all of it; on a shared database, only
/// what has outlived its deadline (a live replica would have finished it),
/// and the periodic [`take_over_stale`] gets the rest.
pub async fn resume(hub: &Arc<Hub>) -> Result<(), Error> {
    take_over_stale(hub, hub.store.backend() == crate::store::Backend::Sqlite).await?;
    for order_id in hub.store.active_upstream_orders().await? {
        tracing::info!(order = %order_id, "resuming relayed order");
        crate::issuance::relay::spawn(hub.clone(), order_id);
    }
    Ok(())
}

/// Signing takes milliseconds: a certificate still `signing` after this
/// many seconds lost its process.
const SIGNING_DEADLINE_SECS: i64 = 30;

/// How long a validation may stay `processing`: every attempt timing out,
/// the pauses between them, and a margin.
fn validation_deadline_secs(v: &crate::config::ValidationConfig) -> i64 {
    let attempts = u64::from(v.attempts.max(1));
    let secs = attempts * v.attempt_timeout_secs.max(1)
        + (attempts - 1) * v.retry_delay_ms.div_ceil(1000)
        + 10;
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// Takes over validations and signings whose process died: those past
/// their deadline, or all of them (`everything`, for a process that owns
/// its database, at start). Each is claimed with a guarded write, so of
/// several replicas sweeping at once exactly one takes it.
pub async fn take_over_stale(hub: &Arc<Hub>, everything: bool) -> Result<(), Error> {
    let now = now();
    let (challenges_before, signing_before, lease_before) = if everything {
        (i64::MAX, i64::MAX, i64::MAX)
    } else {
        (
            now - validation_deadline_secs(&hub.config.validation),
            now - SIGNING_DEADLINE_SECS,
            now,
        )
    };
    // Each unit of work stands alone: one that fails is logged (and, for a
    // signing, its order made invalid by sign_recorded) and the rest go on,
    // so one client's order can neither stop a start nor wedge the sweep.
    for stale in hub.store.stale_challenges(challenges_before).await? {
        match hub.store.claim_challenge(&stale, now).await {
            Ok(true) => {
                tracing::info!(challenge = %stale.challenge_id, "resuming validation");
                spawn_validation(hub.clone(), stale.challenge_id, stale.instance_id);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(challenge = %stale.challenge_id, error = %e, "taking over a validation failed")
            }
        }
    }
    for (cert, lease) in hub
        .store
        .unsigned_certificates(signing_before, lease_before)
        .await?
    {
        if let Err(e) = resume_signing(hub, &cert, lease, now).await {
            tracing::warn!(certificate = %cert.id, order = %cert.order_id, kind = ?e.kind,
                error = %e.detail, "resuming a signing failed");
        }
    }
    Ok(())
}

async fn resume_signing(
    hub: &Arc<Hub>,
    cert: &crate::store::Certificate,
    lease: i64,
    now: i64,
) -> Result<(), Error> {
    if hub
        .store
        .claim_signing(&cert.id, lease, now + SIGNING_DEADLINE_SECS)
        .await?
    {
        tracing::info!(certificate = %cert.id, serial = %cert.serial, "resuming signing");
        finalize::sign_recorded(hub, cert, crate::util::now()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_deduplicated_and_refusals_listed() {
        let req = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let ids = parse_identifiers(&req(&[
            ("dns", "B.example.com"),
            ("dns", "b.example.com"),
            ("ip", "10.0.0.1"),
        ]))
        .unwrap();
        assert_eq!(ids.len(), 2);
        let err = parse_identifiers(&req(&[
            ("dns", "ok.example.com"),
            ("dns", "bad_name.example.com"),
            ("dns", "-x.example.com"),
        ]))
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::RejectedIdentifier);
        assert_eq!(err.subproblems.len(), 2);
        assert_eq!(err.subproblems[0].identifier.value, "bad_name.example.com");
        assert_eq!(
            parse_identifiers(&[]).unwrap_err().kind,
            ErrorKind::Malformed
        );
        let email = parse_identifiers(&req(&[("email", "a@b.c")])).unwrap_err();
        assert_eq!(email.kind, ErrorKind::UnsupportedIdentifier);
    }

    #[test]
    fn requested_validity_windows_are_checked_before_storing() {
        let now = 1_800_000_000;
        let day = 86400;
        let check = |nb, na, ca| check_requested_validity(nb, na, now, 90, ca);
        assert!(check(None, None, None).is_ok());
        assert!(check(Some(now), Some(now + 90 * day), Some(now + 365 * day)).is_ok());
        let detail = |r: Result<(), Error>| {
            let e = r.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Malformed);
            e.detail
        };
        // The finding: a notAfter in the past used to reach the signer.
        assert!(detail(check(None, Some(978_307_200), None)).contains("in the past"));
        assert!(
            detail(check(Some(now + day), Some(now + 10), None)).contains("later than notBefore")
        );
        assert!(detail(check(None, Some(now + 91 * day), None)).contains("90 day"));
        assert!(
            detail(check(None, Some(now + 30 * day), Some(now + 10 * day))).contains("issuing CA")
        );
        assert!(detail(check(Some(now - 2 * 3600), None, None)).contains("notBefore"));
        assert!(detail(check(Some(now + 31 * day), None, None)).contains("notBefore"));
    }

    #[test]
    fn wildcards_and_ips_get_the_right_challenges() {
        let dns = Identifier::dns("example.com").unwrap();
        // Wildcards only by DNS; which of these an order sees is the
        // instance's allowed_challenges.
        assert_eq!(
            offered_challenges(&dns, true),
            vec![
                ChallengeType::Dns01,
                ChallengeType::DnsAccount01,
                ChallengeType::DnsPersist01
            ]
        );
        assert_eq!(offered_challenges(&dns, false).len(), 5);
        let ip = Identifier::ip("127.0.0.1").unwrap();
        assert_eq!(
            offered_challenges(&ip, false),
            vec![ChallengeType::Http01, ChallengeType::TlsAlpn01]
        );
    }
}
