//! The relay (DESIGN: relay issuance): a downstream order of an `upstream`
//! instance becomes an order at a CA account. Work starts at newOrder, runs
//! as a leased background job, and records each step before the next: the
//! upstream order URL before any challenge is answered, so a restart
//! resumes and never orders twice. Failover moves the order down the
//! instance's candidate accounts when one fails.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    AuthorizationStatus, ChallengeType, Identifier as AcmeIdentifier, NewOrder, OrderStatus,
    RetryPolicy,
};
use serde_json::json;

use super::upstream::{UpstreamHttp, acme_error};
use crate::dns::publish::{Solver, challenge_name, solver_for};
use crate::error::{Error, ErrorKind, Subproblem};
use crate::hub::Hub;
use crate::policy::IdentifierKind;
use crate::store::{
    CaAccount, CertificateIssuer, Instance, Issuer, Order, RelayedCertificate, StoreError,
    UpstreamOrder, UpstreamOrderState,
};
use crate::util::now;

/// How long a worker's hold on an order lasts unless extended. The worker
/// extends it every `LEASE_RENEW` while it works, so an order whose worker
/// died is taken over by the 30 s sweep within about a minute and a half.
const LEASE_SECS: i64 = 60;
const LEASE_RENEW: Duration = Duration::from_secs(15);

/// A transient failure at a CA (connection, timeout, 5xx, `serverInternal`)
/// is retried on the same account this many times, after 1 s, then 2 s,
/// before the order moves on (or fails, with failover off).
const RETRIES: u32 = 2;

/// Why an attempt at a CA account failed.
#[derive(Debug)]
enum Failure {
    /// At the CA and maybe passing (connection, timeout, 5xx,
    /// `serverInternal`): retried, then the next account.
    Upstream(Error),
    /// The CA said no (an ACME refusal, an invalid order): the next
    /// account, without retrying this one.
    Refused(Error),
    /// Here, for the order (DNS, no account left): another account would
    /// fail the same way, so the order fails.
    Hub(Error),
    /// The store is away: the job stops and the sweep resumes it later;
    /// the order is not failed for it.
    Store(StoreError),
}

impl Failure {
    fn transient(&self) -> bool {
        matches!(self, Failure::Upstream(_))
    }

    fn error(&self) -> Error {
        match self {
            Failure::Upstream(e) | Failure::Refused(e) | Failure::Hub(e) => e.clone(),
            Failure::Store(e) => Error::internal("relaying", e),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Hub(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

/// Starts (or resumes) the relay job of an order in the background.
pub fn spawn(hub: Arc<Hub>, order_id: String) {
    tokio::spawn(async move {
        if let Err(e) = run(&hub, &order_id).await {
            tracing::warn!(order = %order_id, error = %e, "relay job stopped with an error");
        }
    });
}

/// How the relay polls an upstream order: soon at first (a CA that
/// validates at once answers within milliseconds), then doubling; a CA's
/// Retry-After takes precedence (instant-acme honours it).
fn retry(timeout: Duration) -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .backoff(2.0)
        .timeout(timeout)
}

async fn run(hub: &Arc<Hub>, order_id: &str) -> Result<(), Error> {
    let owner = crate::util::random_id();
    let held_until = now() + LEASE_SECS;
    if !hub
        .store
        .lease_upstream_order(order_id, now(), held_until, &owner)
        .await?
    {
        return Ok(());
    }
    tracing::info!(order = %order_id, lease = %owner, "working on the relayed order");
    let outcome = tokio::select! {
        outcome = advance(hub, order_id) => outcome,
        () = keep_lease(hub, order_id, &owner, held_until) => Ok(()),
    };
    hub.store.release_upstream_order(order_id, &owner).await?;
    // A CSR that arrived while this worker held the lease is picked up now.
    if outcome.is_ok() {
        if let Some(u) = hub.store.upstream_order(order_id).await? {
            if u.state == UpstreamOrderState::Ready && u.csr.is_some() {
                Box::pin(run(hub, order_id)).await?;
            }
        }
    }
    outcome
}

/// Extends the lease while the worker runs; returns only when it was lost
/// (it lapsed, and another worker took the order), which stops the worker.
async fn keep_lease(hub: &Hub, order_id: &str, owner: &str, mut held: i64) {
    loop {
        tokio::time::sleep(LEASE_RENEW).await;
        let until = now() + LEASE_SECS;
        match hub
            .store
            .extend_upstream_order(order_id, owner, until)
            .await
        {
            Ok(true) => held = until,
            Ok(false) => {
                tracing::warn!(order = %order_id, "another worker took over this relayed order");
                return;
            }
            // The store is away for now: keep working while the lease
            // holds, try again next round; once it lapsed, stop.
            Err(e) => {
                tracing::warn!(order = %order_id, error = %e, "extending a lease failed");
                if now() >= held {
                    return;
                }
            }
        }
    }
}

async fn advance(hub: &Hub, order_id: &str) -> Result<(), Error> {
    let Some(mut u) = hub.store.upstream_order(order_id).await? else {
        return Ok(());
    };
    let instance = hub
        .store
        .instance_by_ref(&u.instance_id)
        .await?
        .ok_or_else(|| Error::internal("relaying", "instance vanished"))?;
    let order = hub
        .store
        .order(&instance.id, order_id)
        .await?
        .ok_or_else(|| Error::internal("relaying", "order vanished"))?;
    let mut retries = 0;
    loop {
        let outcome = match u.state {
            UpstreamOrderState::New | UpstreamOrderState::Authorizing => {
                authorize(hub, &instance, &order, &mut u).await
            }
            // `finalizing` is where a restart finds an order whose CSR went
            // upstream. A failure there moves on too (the CSR is kept): the
            // client waits for a certificate, not for one CA.
            UpstreamOrderState::Ready | UpstreamOrderState::Finalizing if u.csr.is_some() => {
                issue(hub, &instance, &order, &mut u).await
            }
            // Waiting for the client's CSR, or done.
            UpstreamOrderState::Ready
            | UpstreamOrderState::Finalizing
            | UpstreamOrderState::Valid
            | UpstreamOrderState::Failed => return Ok(()),
        };
        let Err(f) = outcome else {
            retries = 0;
            continue;
        };
        if let Failure::Store(e) = f {
            return Err(e.into());
        }
        // Once the CA took the CSR, a second CA would issue a second
        // certificate: only a refusal (the order invalid there) moves on;
        // a CA that is away is waited for (the sweep tries again).
        if u.state == UpstreamOrderState::Finalizing && f.transient() && retries >= RETRIES {
            tracing::warn!(order = %order.id, error = %f.error().detail, "the CA that has the CSR is away; trying again later");
            return Ok(());
        }
        if f.transient() && retries < RETRIES {
            retries += 1;
            tracing::info!(order = %order.id, retry = retries, error = %f.error().detail, "retrying the upstream CA");
            tokio::time::sleep(Duration::from_secs(1 << (retries - 1))).await;
            continue;
        }
        retries = 0;
        if !try_next_account(hub, &instance, &order, &mut u, &f).await? {
            return fail(hub, &order, &mut u, f.error()).await;
        }
    }
}

/// The account the order is on, or the first candidate that is not yet tried.
async fn current_account(
    hub: &Hub,
    instance: &Instance,
    order: &Order,
    u: &UpstreamOrder,
) -> Result<CaAccount, Error> {
    chosen_account(hub, instance, order, u)
        .await
        .map(|(account, _)| account)
}

/// [`current_account`], with the accounts CAA made it pass over (name,
/// why), when it had to choose one.
async fn chosen_account(
    hub: &Hub,
    instance: &Instance,
    order: &Order,
    u: &UpstreamOrder,
) -> Result<(CaAccount, Vec<(String, String)>), Error> {
    let accounts = hub.store.ca_accounts(&instance.id).await?;
    if let Some(id) = &u.ca_account_id {
        if let Some(a) = accounts.iter().find(|a| a.id == *id) {
            return Ok((a.clone(), Vec::new()));
        }
    }
    // Accounts CAA passed over were not tried: once CAA allows them, they may.
    let tried: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&u.attempts)
        .unwrap_or_default()
        .iter()
        .filter(|a| a.get("skipped").is_none())
        .filter_map(|a| a["account"].as_str().map(str::to_string))
        .collect();
    let serving = super::upstream::serving_accounts(
        hub,
        &accounts,
        instance.environment,
        &order.identifiers,
        order.profile.as_deref(),
    )
    .await;
    match serving
        .accounts
        .into_iter()
        .find(|a| !tried.contains(&a.name))
    {
        Some(account) => Ok((account.clone(), serving.caa_skipped)),
        None => {
            let mut all = serving.reasons;
            all.extend(tried.iter().map(|t| format!("{t}: failed for this order")));
            Err(super::no_matching_account(instance, &all))
        }
    }
}

/// Puts the accounts CAA passed over on the order's record of attempts
/// (once each) and in the log, so failover is seen not to have tried them.
fn record_caa_skips(order: &Order, u: &mut UpstreamOrder, skipped: &[(String, String)]) {
    if skipped.is_empty() {
        return;
    }
    let mut attempts: Vec<serde_json::Value> =
        serde_json::from_str(&u.attempts).unwrap_or_default();
    for (name, why) in skipped {
        if attempts.iter().any(|a| a["account"] == name.as_str()) {
            continue;
        }
        tracing::info!(order = %order.id, account = %name, reason = %why, "CA account skipped: CAA forbids it");
        attempts.push(json!({"account": name, "skipped": "caa", "error": why, "at": now()}));
    }
    u.attempts = serde_json::to_string(&attempts).unwrap_or_else(|_| "[]".into());
}

/// An instant-acme account for a CA account, registering it first when needed.
/// A CA account ready for requests: instant-acme's client, the transport,
/// and the account's credentials (instant-acme's JSON).
struct Upstream {
    client: instant_acme::Account,
    http: UpstreamHttp,
    credentials: String,
}

async fn upstream_account(hub: &Hub, account: &CaAccount) -> Result<Upstream, Failure> {
    let mut account = account.clone();
    let mut why = account.status_detail.clone();
    if account.sealed_credentials.is_none() {
        let (report, registered) =
            crate::issuance::ca_accounts::test_ca_account(hub, &crate::audit::Actor::Hub, &account)
                .await?;
        account = registered;
        why = report.detail;
    }
    let sealed = account.sealed_credentials.as_ref().ok_or_else(|| {
        Failure::Upstream(Error::new(
            ErrorKind::ServerInternal,
            format!("CA account {:?} is not registered: {why}", account.name),
        ))
    })?;
    let plain = hub
        .secrets
        .open(
            sealed,
            &crate::secrets::owner("ca-account", &account.instance_id, &account.id),
        )
        .map_err(|e| Error::internal("opening a CA account", e))?;
    let credentials =
        String::from_utf8(plain).map_err(|e| Error::internal("reading a CA account", e))?;
    let parsed: instant_acme::AccountCredentials = serde_json::from_str(&credentials)
        .map_err(|e| Error::internal("reading a CA account", e))?;
    let http = UpstreamHttp::new(
        account.trusted_roots_pem.as_deref(),
        Duration::from_secs(account.api_timeout_s.max(1) as u64),
    )
    .map_err(|e| Error::new(ErrorKind::ServerInternal, e))?;
    let client = instant_acme::Account::builder_with_http(Box::new(http.clone()))
        .from_credentials(parsed)
        .await
        .map_err(|e| upstream_error(&account, e))?;
    Ok(Upstream {
        client,
        http,
        credentials,
    })
}

/// An error from a CA account's ACME server, as the problem a downstream
/// client would get if no other account can serve.
fn upstream_error(account: &CaAccount, e: instant_acme::Error) -> Failure {
    let kind = match &e {
        instant_acme::Error::Api(p) => match p.r#type.as_deref().and_then(|t| t.rsplit(':').next())
        {
            Some("rateLimited") => ErrorKind::RateLimited,
            Some("caa") => ErrorKind::Caa,
            Some("rejectedIdentifier") => ErrorKind::RejectedIdentifier,
            Some("unsupportedIdentifier") => ErrorKind::UnsupportedIdentifier,
            Some("badCSR") => ErrorKind::BadCsr,
            Some("badPublicKey") => ErrorKind::BadPublicKey,
            Some("serverInternal") | None => ErrorKind::ServerInternal,
            // Other refusals (unauthorized, malformed, userActionRequired,
            // ...) are the CA's word on this request, not an outage.
            Some(_) => ErrorKind::Unauthorized,
        },
        _ => ErrorKind::ServerInternal,
    };
    let error = Error::new(
        kind,
        format!("CA account {:?}: {}", account.name, acme_error(e)),
    );
    if kind == ErrorKind::ServerInternal {
        Failure::Upstream(error)
    } else {
        Failure::Refused(error)
    }
}

fn acme_identifiers(order: &Order) -> Vec<AcmeIdentifier> {
    order
        .identifiers
        .iter()
        .map(|i| match i.kind {
            IdentifierKind::Dns => AcmeIdentifier::Dns(i.value.clone()),
            IdentifierKind::Ip => {
                AcmeIdentifier::Ip(i.value.parse().expect("stored IP identifiers parse"))
            }
        })
        .collect()
}

/// Creates the upstream order (recording its URL first thing), answers its
/// pending DNS-01 challenges through the instance's solvers, and waits
/// until it is ready. Published records are removed whatever the outcome.
async fn authorize(
    hub: &Hub,
    instance: &Instance,
    order: &Order,
    u: &mut UpstreamOrder,
) -> Result<(), Failure> {
    let (account, skipped) = chosen_account(hub, instance, order, u).await?;
    record_caa_skips(order, u, &skipped);
    // Which account is being tried goes on record first, so a failure moves
    // the order on to the next one.
    u.ca_account_id = Some(account.id.clone());
    let upstream_client = upstream_account(hub, &account).await?;
    let client = &upstream_client.client;
    let mut upstream = match &u.upstream_url {
        Some(url) => client
            .order(url.clone())
            .await
            .map_err(|e| upstream_error(&account, e))?,
        None => {
            let identifiers = acme_identifiers(order);
            let mut new = NewOrder::new(&identifiers);
            if let Some(profile) = &order.profile {
                new = new.profile(profile);
            }
            let created = client
                .new_order(&new)
                .await
                .map_err(|e| upstream_error(&account, e))?;
            u.upstream_url = Some(created.url().to_string());
            u.state = UpstreamOrderState::Authorizing;
            hub.store.update_upstream_order(u).await?;
            tracing::info!(order = %order.id, account = %account.name, upstream = %created.url(), "upstream order created");
            created
        }
    };
    let mut published: Vec<(Solver, String, String)> = Vec::new();
    let outcome = async {
        let mut authorizations = upstream.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| upstream_error(&account, e))?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            let mut challenge = authz.challenge(ChallengeType::Dns01).ok_or_else(|| {
                Failure::Upstream(Error::new(
                    ErrorKind::ServerInternal,
                    format!("CA account {:?} offers no dns-01 challenge", account.name),
                ))
            })?;
            let name = match challenge.identifier().identifier {
                AcmeIdentifier::Dns(d) => challenge_name(d),
                other => {
                    return Err(Failure::Hub(Error::new(
                        ErrorKind::UnsupportedIdentifier,
                        format!("cannot answer upstream challenges for {other:?}"),
                    )));
                }
            };
            let value = challenge.key_authorization().dns_value();
            let solver = solver_for(hub, instance, &name).await?;
            solver.publish(hub, &name, &value).await?;
            published.push((solver, name.clone(), value.clone()));
            published
                .last()
                .expect("just pushed")
                .0
                .wait_visible(hub, &name, &value)
                .await?;
            challenge
                .set_ready()
                .await
                .map_err(|e| upstream_error(&account, e))?;
        }
        let timeout = Duration::from_secs(hub.config.dns.propagation_timeout_secs.max(30));
        match upstream
            .poll_ready(&retry(timeout))
            .await
            .map_err(|e| upstream_error(&account, e))?
        {
            OrderStatus::Ready | OrderStatus::Valid | OrderStatus::Processing => Ok(()),
            // Our records were visible at the authoritative servers before
            // the CA was told to look: its validation failing is on its side.
            status => Err(Failure::Refused(Error::new(
                ErrorKind::ServerInternal,
                format!(
                    "the upstream order at CA account {:?} is {status:?}",
                    account.name
                ),
            ))),
        }
    }
    .await;
    for (solver, name, value) in &published {
        if let Err(e) = solver.cleanup(hub, name, value).await {
            tracing::warn!(record = %name, error = %e, "cleaning up an upstream challenge record failed");
        }
    }
    outcome?;
    u.state = UpstreamOrderState::Ready;
    hub.store.update_upstream_order(u).await?;
    Ok(())
}

/// On an upstream failure with failover on, moves the order to the next
/// candidate account. True when there is one to try.
async fn try_next_account(
    hub: &Hub,
    instance: &Instance,
    order: &Order,
    u: &mut UpstreamOrder,
    f: &Failure,
) -> Result<bool, Error> {
    let e = &f.error();
    let Some(account_id) = u.ca_account_id.clone() else {
        return Ok(false);
    };
    let name = hub
        .store
        .ca_account(&instance.id, &account_id)
        .await?
        .map(|a| a.name)
        .unwrap_or(account_id);
    let mut attempts: Vec<serde_json::Value> =
        serde_json::from_str(&u.attempts).unwrap_or_default();
    attempts.push(json!({"account": name, "error": e.detail, "at": now()}));
    u.attempts = serde_json::to_string(&attempts).unwrap_or_else(|_| "[]".into());
    // Problems here (DNS, the store) are ours to fix, not the CA's: another
    // CA would fail the same way.
    if !instance.failover || matches!(f, Failure::Hub(_)) {
        return Ok(false);
    }
    u.ca_account_id = None;
    u.upstream_url = None;
    u.state = UpstreamOrderState::New;
    let next = current_account(hub, instance, order, u).await.is_ok();
    hub.store.update_upstream_order(u).await?;
    tracing::warn!(order = %order.id, failed = %name, next, error = %e.detail, "upstream attempt failed");
    Ok(next)
}

/// Finalizes upstream with the client's CSR and stores what the CA issued.
async fn issue(
    hub: &Hub,
    instance: &Instance,
    order: &Order,
    u: &mut UpstreamOrder,
) -> Result<(), Failure> {
    let account = current_account(hub, instance, order, u).await?;
    let up = upstream_account(hub, &account).await?;
    let client = &up.client;
    let url = u
        .upstream_url
        .clone()
        .ok_or_else(|| Error::internal("relaying", "ready without an upstream order"))?;
    let mut upstream = client
        .order(url)
        .await
        .map_err(|e| upstream_error(&account, e))?;
    let csr = u.csr.clone().unwrap_or_default();
    if upstream.state().status == OrderStatus::Ready {
        upstream
            .finalize_csr(&csr)
            .await
            .map_err(|e| upstream_error(&account, e))?;
    }
    u.state = UpstreamOrderState::Finalizing;
    hub.store.update_upstream_order(u).await?;
    let chain = upstream
        .poll_certificate(&retry(Duration::from_secs(
            account.api_timeout_s.max(30) as u64
        )))
        .await
        .map_err(|e| upstream_error(&account, e))?;
    use rustls_pki_types::pem::PemObject;
    let leaf = rustls_pki_types::CertificateDer::pem_slice_iter(chain.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| {
            Failure::Refused(Error::new(
                ErrorKind::ServerInternal,
                format!("CA account {:?} returned no certificate", account.name),
            ))
        })?;
    // Alternate chains are a courtesy: without them the default one serves.
    let alternate_chains = match upstream.state().certificate.clone() {
        Some(cert_url) => up
            .http
            .alternate_chains(&up.credentials, &cert_url, &leaf)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(order = %order.id, account = %account.name, error = %e, "fetching alternate chains failed");
                Vec::new()
            }),
        None => Vec::new(),
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).map_err(|_| {
        Failure::Refused(Error::new(
            ErrorKind::ServerInternal,
            format!(
                "the certificate from CA account {:?} does not parse",
                account.name
            ),
        ))
    })?;
    let record = RelayedCertificate {
        order_id: order.id.clone(),
        instance_id: instance.id.clone(),
        account_id: order.account_id.clone(),
        serial: crate::util::hex(parsed.raw_serial()),
        issuer: CertificateIssuer::CaAccount(account.name.clone()),
        identifiers: order.identifiers.clone(),
        spki: parsed.public_key().raw.to_vec(),
        not_before: parsed.validity().not_before.timestamp(),
        not_after: parsed.validity().not_after.timestamp(),
        der: leaf.to_vec(),
        chain_pem: chain,
        alternate_chains,
        // Without an AKI (RFC 9773 needs one) the certificate simply has no ARI.
        ari_id: crate::ca::ari_cert_id(&leaf).ok(),
    };
    match hub.store.complete_relayed_issuance(&record).await {
        Ok(cert_id) => {
            metrics::counter!("acmehub_certificates_issued_total", "issuer" => Issuer::Upstream.as_str())
                .increment(1);
            tracing::info!(order = %order.id, account = %account.name, serial = %record.serial, "relayed certificate issued");
            crate::audit::record(
                hub,
                Some(&instance.id),
                &crate::audit::Actor::Account(order.account_id.clone()),
                "certificate.issue",
                ("certificate", &cert_id),
                json!({"serial": record.serial, "order": order.id, "ca_account": account.name}),
            )
            .await;
            u.state = UpstreamOrderState::Valid;
            Ok(())
        }
        Err(StoreError::Guard) => {
            // The downstream order is no longer waiting (finished, or expired).
            u.state = UpstreamOrderState::Valid;
            hub.store.update_upstream_order(u).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The upstream CA's renewal window (RFC 9773) for a certificate it issued
/// through the relay, as unix times, and for how many seconds the answer
/// holds (its Retry-After). `None` when the CA offers no ARI or does not
/// answer within a few seconds: the caller then answers on its own.
pub async fn upstream_renewal_info(
    hub: &Hub,
    cert: &crate::store::Certificate,
) -> Option<(i64, i64, u64)> {
    // Answers (and their absence) are kept until the CA's Retry-After, so
    // downstream polling never turns into one upstream call per request.
    let key = cert.id.clone();
    if let Some((until, answer)) = ARI_CACHE.lock().ok()?.get(&key) {
        if *until > now() {
            return *answer;
        }
    }
    let answer = fetch_renewal_info(hub, cert).await;
    let holds = answer.map_or(ARI_MISS_SECS, |(_, _, h)| h.clamp(60, 6 * 3600) as i64);
    if let Ok(mut cache) = ARI_CACHE.lock() {
        if cache.len() >= ARI_CACHE_MAX {
            let at = now();
            cache.retain(|_, (until, _)| *until > at);
            if cache.len() >= ARI_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, (now() + holds, answer));
    }
    answer
}

/// Upstream renewal windows by certificate id, with when each expires.
type AriCache = std::collections::HashMap<String, (i64, Option<(i64, i64, u64)>)>;
static ARI_CACHE: std::sync::LazyLock<std::sync::Mutex<AriCache>> =
    std::sync::LazyLock::new(Default::default);
const ARI_CACHE_MAX: usize = 100_000;
/// How long "the CA has no window for it" is believed.
const ARI_MISS_SECS: i64 = 600;

async fn fetch_renewal_info(
    hub: &Hub,
    cert: &crate::store::Certificate,
) -> Option<(i64, i64, u64)> {
    let u = hub.store.upstream_order(&cert.order_id).await.ok()??;
    let account = hub
        .store
        .ca_account(&cert.instance_id, u.ca_account_id.as_deref()?)
        .await
        .ok()??;
    // The stored ARI id is the RFC 9773 §4.1 form, `aki.serial`.
    let (aki, serial) = cert.ari_id.as_deref()?.split_once('.')?;
    let id = instant_acme::CertificateIdentifier {
        authority_key_identifier: aki.into(),
        serial: serial.into(),
    };
    // Never registers an account from here (an unauthenticated request).
    account.sealed_credentials.as_ref()?;
    let lookup = async {
        let up = upstream_account(hub, &account).await.ok()?;
        match up.client.renewal_info(&id).await {
            Ok(found) => Some(found),
            Err(e) => {
                tracing::info!(account = %account.name, error = %acme_error(e), "no upstream renewal information");
                None
            }
        }
    };
    let (info, holds) = tokio::time::timeout(Duration::from_secs(5), lookup)
        .await
        .ok()??;
    let window = info.suggested_window;
    Some((
        window.start.unix_timestamp(),
        window.end.unix_timestamp(),
        holds.as_secs(),
    ))
}

/// Ends a relayed order for good: the downstream order becomes invalid with the cause.
async fn fail(hub: &Hub, order: &Order, u: &mut UpstreamOrder, e: Error) -> Result<(), Error> {
    // A DNS failure concerns the order's names: one subproblem each.
    let subproblems = if e.kind == ErrorKind::Dns {
        order
            .identifiers
            .iter()
            .map(|i| Subproblem {
                kind: e.kind,
                detail: e.detail.clone(),
                identifier: i.into(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let e = Error { subproblems, ..e };
    let problem = crate::error::Problem::from_error(&e).to_json();
    u.state = UpstreamOrderState::Failed;
    u.error = Some(e.detail.clone());
    hub.store.update_upstream_order(u).await?;
    hub.store.fail_order(&order.id, &problem).await?;
    tracing::warn!(order = %order.id, error = %e.detail, "relayed order failed");
    Ok(())
}
