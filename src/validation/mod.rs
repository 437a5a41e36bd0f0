//! The validation authority (VA): checks http-01 (RFC 8555 §8.3), dns-01
//! (§8.4) and tls-alpn-01 (RFC 8737) challenges and CAA (RFC 8659). It is the
//! only code in the hub that dials customer hosts, and all its DNS goes
//! through the configured resolvers ([`Resolver`]).
//!
//! It must never echo a body fetched from a customer host into an error or a
//! log, never dial an address its [`TargetPolicy`] refuses (link-local,
//! multicast and the like and the hub's own listeners always, private ones
//! where the instance says so; every redirect hop included), and never
//! change state: it answers "valid" or "invalid, because ..." and the order
//! state machine decides what follows.

mod caa;
pub use caa::{PRE_AUTHORIZED, Requester};
mod dns01;
pub mod dns_account01;
pub mod dns_persist01;
mod http01;
pub mod resolver;
mod target;
mod tlsalpn01;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::ValidationConfig;
use crate::error::{Error, ErrorKind};
use crate::policy::{ChallengeType, Identifier, IdentifierKind};

pub use resolver::{LookupError, Resolver};
pub use target::{AddressClass, TargetPolicy, classify};

/// Validates challenges and checks CAA with the `[validation]` settings.
/// Cheap to clone (the resolver and TLS settings are shared).
#[derive(Clone)]
pub struct Validator {
    resolver: Resolver,
    http01_port: u16,
    tlsalpn01_port: u16,
    /// Which addresses may be dialed (every redirect hop included).
    policy: TargetPolicy,
    attempt_timeout: Duration,
    attempts: u32,
    retry_delay: Duration,
    caa_identities: Vec<String>,
    /// For https redirect hops of http-01: any certificate (RFC 8555 §8.3).
    https_client: Arc<rustls::ClientConfig>,
    /// For tls-alpn-01: ALPN `acme-tls/1` only, any certificate (checked after).
    alpn_client: Arc<rustls::ClientConfig>,
}

impl Validator {
    /// Builds a validator (and its resolver) from the `[validation]` settings.
    pub fn new(config: &ValidationConfig) -> Result<Validator, Error> {
        let servers = config
            .resolver_addrs()
            .map_err(|e| Error::internal("reading the validation resolvers", e))?;
        let attempt_timeout = config.attempt_timeout();
        // Leave room in one attempt for a retry on another server or over TCP.
        let query_timeout = (attempt_timeout / 2).max(Duration::from_millis(500));
        let resolver = Resolver::new(&servers, query_timeout)?;
        Ok(Validator {
            resolver,
            http01_port: config.http01_port,
            tlsalpn01_port: config.tlsalpn01_port,
            policy: TargetPolicy::new(config.allow_private_targets, Vec::new()),
            attempt_timeout,
            attempts: config.attempts.max(1),
            retry_delay: Duration::from_millis(config.retry_delay_ms),
            caa_identities: config
                .caa_identities
                .iter()
                .map(|s| s.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
            https_client: Arc::new(tlsalpn01::client_config(vec![b"http/1.1".to_vec()])?),
            alpn_client: Arc::new(tlsalpn01::client_config(vec![
                tlsalpn01::ACME_TLS_1.to_vec(),
            ])?),
        })
    }

    /// The same validator with the private-target rule set per instance: an
    /// instance that faces the Internet turns private targets off.
    pub fn with_private_targets(mut self, allow: bool) -> Validator {
        self.policy = self.policy.with_private(allow);
        self
    }

    /// The same validator knowing the hub's own listeners (address and what
    /// each is), which are never targets: a challenge must not make the hub
    /// talk to itself.
    pub fn with_own_listeners(
        mut self,
        own: Vec<(std::net::SocketAddr, &'static str)>,
    ) -> Validator {
        self.policy = TargetPolicy::new(self.policy.allow_private, own);
        self
    }

    /// The outbound policy, with private targets as the hub's
    /// `[validation] allow_private_targets` says (instances may differ).
    pub fn policy(&self) -> &TargetPolicy {
        &self.policy
    }

    /// One complete validation: up to `attempts` attempts, `retry_delay_ms`
    /// apart, each bounded by the attempt timeout. Only transient failures
    /// (connection, DNS other than NXDOMAIN, timeouts) are retried. `Ok(())`
    /// means the challenge is valid.
    ///
    /// `account_url` is the account's URL as its `Location` said: the
    /// dns-account-01 label is derived from it, and a dns-persist-01 record
    /// must name it.
    pub async fn validate(
        &self,
        challenge: ChallengeType,
        identifier: &Identifier,
        token: &str,
        key_authorization: &str,
        account_url: &str,
    ) -> Result<(), Error> {
        let mut attempt = 1;
        loop {
            let outcome = match tokio::time::timeout(
                self.attempt_timeout,
                self.attempt(challenge, identifier, token, key_authorization, account_url),
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(_) => Err(Failure::transient(
                    ErrorKind::Connection,
                    format!(
                        "validating {} with {} took longer than {} s; check that the host answers promptly",
                        identifier.value,
                        challenge,
                        self.attempt_timeout.as_secs()
                    ),
                )),
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(
                        challenge = challenge.as_str(),
                        identifier = %identifier,
                        outcome = "valid",
                        attempt,
                        "challenge validated"
                    );
                    record_outcome(challenge, "valid");
                    return Ok(());
                }
                Err(failure) if failure.transient && attempt < self.attempts => {
                    tracing::debug!(
                        challenge = challenge.as_str(),
                        identifier = %identifier,
                        attempt,
                        kind = ?failure.error.kind,
                        detail = %failure.error.detail,
                        "validation attempt failed; retrying"
                    );
                    attempt += 1;
                    tokio::time::sleep(self.retry_delay).await;
                }
                Err(failure) => {
                    tracing::info!(
                        challenge = challenge.as_str(),
                        identifier = %identifier,
                        outcome = "invalid",
                        attempt,
                        kind = ?failure.error.kind,
                        detail = %failure.error.detail,
                        "challenge validation failed"
                    );
                    record_outcome(challenge, "invalid");
                    return Err(failure.error);
                }
            }
        }
    }

    /// CAA check (RFC 8659 §3): climbs from the name toward the root and
    /// applies the first CAA record set found. Skipped when no
    /// `caa_identities` are configured and for IP identifiers (CAA is
    /// defined for domain names only).
    pub async fn check_caa(
        &self,
        identifier: &Identifier,
        requester: Requester<'_>,
    ) -> Result<(), Error> {
        self.caa(identifier, requester).await
    }

    /// The hub's resolver; every other module's lookups go through it.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    async fn attempt(
        &self,
        challenge: ChallengeType,
        identifier: &Identifier,
        token: &str,
        key_authorization: &str,
        account_url: &str,
    ) -> Result<(), Failure> {
        // RFC 8555 §8.1: tokens are base64url; anything else could steer the
        // request path, so refuse it before dialing.
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Failure::permanent(
                ErrorKind::Malformed,
                format!(
                    "the challenge token for {} is not base64url",
                    identifier.value
                ),
            ));
        }
        match challenge {
            ChallengeType::Http01 | ChallengeType::TlsAlpn01 if identifier.is_wildcard() => {
                Err(Failure::permanent(
                    ErrorKind::Malformed,
                    format!(
                        "{challenge} cannot validate the wildcard identifier {}; use dns-01 (RFC 8555 §7.1.3)",
                        identifier.value
                    ),
                ))
            }
            ChallengeType::Dns01 | ChallengeType::DnsAccount01 | ChallengeType::DnsPersist01
                if identifier.kind == IdentifierKind::Ip =>
            {
                Err(Failure::permanent(
                    ErrorKind::Malformed,
                    format!(
                        "{challenge} cannot validate the IP identifier {}; use http-01 or tls-alpn-01 (RFC 8738 §7)",
                        identifier.value
                    ),
                ))
            }
            ChallengeType::Http01 => self.http01(identifier, token, key_authorization).await,
            ChallengeType::Dns01 => self.dns01(identifier, key_authorization).await,
            ChallengeType::TlsAlpn01 => self.tls_alpn01(identifier, key_authorization).await,
            ChallengeType::DnsAccount01 => {
                self.dns_account01(identifier, key_authorization, account_url)
                    .await
            }
            ChallengeType::DnsPersist01 => self.dns_persist01(identifier, account_url).await,
        }
    }
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("http01_port", &self.http01_port)
            .field("tlsalpn01_port", &self.tlsalpn01_port)
            .field("policy", &self.policy)
            .field("attempts", &self.attempts)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("caa_identities", &self.caa_identities)
            .finish_non_exhaustive()
    }
}

/// One attempt's failure: the error the client will see, and whether another
/// attempt could succeed.
#[derive(Debug)]
struct Failure {
    error: Error,
    transient: bool,
}

impl Failure {
    fn transient(kind: ErrorKind, detail: impl Into<String>) -> Failure {
        Failure {
            error: Error::new(kind, detail),
            transient: true,
        }
    }

    fn permanent(kind: ErrorKind, detail: impl Into<String>) -> Failure {
        Failure {
            error: Error::new(kind, detail),
            transient: false,
        }
    }
}

fn record_outcome(challenge: ChallengeType, outcome: &'static str) {
    metrics::counter!("acmehub_validations_total", "type" => challenge.as_str(), "outcome" => outcome).increment(1);
}

/// base64url(SHA-256(key authorization)) without padding: the dns-01 TXT value
/// (RFC 8555 §8.4).
fn key_authorization_digest(key_authorization: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(key_authorization))
}

fn sha256(key_authorization: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod testutil;

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn dns01_digest_matches_rfc8555_example_shape() {
        // 43 characters: 32 bytes in unpadded base64url.
        let d = key_authorization_digest("token.thumbprint");
        assert_eq!(d.len(), 43);
        assert!(!d.contains('=') && !d.contains('+') && !d.contains('/'));
    }

    #[tokio::test]
    async fn bad_tokens_and_unsuitable_challenges_are_refused_without_dialing() {
        let dns = lab_dns().await;
        let v = Validator::new(&lab_config(&dns)).unwrap();
        let name = Identifier::dns("www.example.com").unwrap();
        let err = v
            .validate(ChallengeType::Http01, &name, "../etc", "x", "")
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Malformed);
        let wildcard = Identifier::dns("*.example.com").unwrap();
        let err = v
            .validate(ChallengeType::Http01, &wildcard, "tok", "x", "")
            .await
            .unwrap_err();
        assert!(err.detail.contains("use dns-01"), "{}", err.detail);
        let ip = Identifier::ip("127.0.0.1").unwrap();
        let err = v
            .validate(ChallengeType::Dns01, &ip, "tok", "x", "")
            .await
            .unwrap_err();
        assert!(err.detail.contains("RFC 8738"), "{}", err.detail);
    }

    #[tokio::test]
    async fn metadata_addresses_are_refused_by_every_challenge_that_dials() {
        let dns = lab_dns().await;
        // Private targets allowed: link-local is refused all the same, and
        // without a connection there is no answer to report.
        let v = Validator::new(&lab_config(&dns)).unwrap();
        let ip = Identifier::ip("169.254.169.254").unwrap();
        for challenge in [ChallengeType::Http01, ChallengeType::TlsAlpn01] {
            let err = v
                .validate(challenge, &ip, "tok", "x", "")
                .await
                .unwrap_err();
            assert!(
                err.detail
                    .contains("169.254.169.254 is link-local: refused by policy"),
                "{challenge}: {}",
                err.detail
            );
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried() {
        let dns = lab_dns().await;
        dns.set_a("retry.example.com", &["127.0.0.1".parse().unwrap()]);
        // A port with nothing listening yet: the first attempt is refused
        // (transient), the server comes up during the pause, the second succeeds.
        let port = free_port().await;
        let mut config = lab_config(&dns);
        config.http01_port = port;
        config.attempts = 3;
        config.retry_delay_ms = 300;
        let v = Validator::new(&config).unwrap();
        let name = Identifier::dns("retry.example.com").unwrap();
        let late_server = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            serve_http_on(port, challenge_router("tok", "tok.thumb")).await;
        };
        let (result, ()) = tokio::join!(
            v.validate(ChallengeType::Http01, &name, "tok", "tok.thumb", ""),
            late_server
        );
        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn transient_failures_give_up_after_the_configured_attempts() {
        let dns = lab_dns().await;
        dns.set_a("down.example.com", &["127.0.0.1".parse().unwrap()]);
        let mut config = lab_config(&dns);
        config.http01_port = free_port().await;
        config.attempts = 3;
        config.retry_delay_ms = 100;
        let v = Validator::new(&config).unwrap();
        let started = std::time::Instant::now();
        let err = v
            .validate(
                ChallengeType::Http01,
                &Identifier::dns("down.example.com").unwrap(),
                "tok",
                "tok.thumb",
                "",
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Connection);
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "two pauses between three attempts"
        );
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dns = lab_dns().await;
        dns.set_a("www.example.com", &["127.0.0.1".parse().unwrap()]);
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let router = axum::Router::new().route(
            "/.well-known/acme-challenge/tok",
            axum::routing::get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { "wrong" }
            }),
        );
        let addr = serve_http(router).await;
        let mut config = lab_config(&dns);
        config.http01_port = addr.port();
        config.attempts = 3;
        let v = Validator::new(&config).unwrap();
        let err = v
            .validate(
                ChallengeType::Http01,
                &Identifier::dns("www.example.com").unwrap(),
                "tok",
                "tok.thumb",
                "",
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::IncorrectResponse);
        assert_eq!(hits.load(Ordering::SeqCst), 1, "a wrong answer is final");
    }
}
