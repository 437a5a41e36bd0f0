//! Complete issuances with instant-acme as the client, through each
//! challenge type, on each database, and what follows: download, revoke,
//! CRL, ARI, restart.

use std::net::{IpAddr, Ipv4Addr};

use instant_acme::{
    AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
    RevocationReason, RevocationRequest,
};
use x509_parser::prelude::*;

use crate::harness::*;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn retry() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(std::time::Duration::from_millis(50))
        .backoff(1.5)
}

/// Checks leaf -> intermediate -> root signatures and returns the leaf's SANs.
pub(crate) fn verify_chain(chain_pem: &str, root_pem: &std::path::Path) -> (Vec<String>, Vec<u8>) {
    let chain = pem_chain(chain_pem);
    assert_eq!(chain.len(), 2, "chain is leaf + intermediate");
    let root = pem_chain(&std::fs::read_to_string(root_pem).unwrap());
    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    let (_, inter) = X509Certificate::from_der(&chain[1]).unwrap();
    let (_, root) = X509Certificate::from_der(&root[0]).unwrap();
    leaf.verify_signature(Some(inter.public_key()))
        .expect("leaf signed by intermediate");
    inter
        .verify_signature(Some(root.public_key()))
        .expect("intermediate signed by root");
    assert!(!leaf.is_ca());
    let sans = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    (sans, chain[0].clone())
}

/// Answers every authorization of `order` with `kind`, then finalizes and downloads.
pub(crate) async fn issue(
    t: &TestHub,
    account: &instant_acme::Account,
    identifiers: Vec<Identifier>,
    kind: ChallengeType,
) -> String {
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .unwrap();
    assert_eq!(order.state().status, OrderStatus::Pending);
    let http = Http01Responder::start(t.http01_port).await;
    let mut alpn = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.unwrap();
        assert_eq!(authz.status, AuthorizationStatus::Pending);
        let mut challenge = authz
            .challenge(kind.clone())
            .expect("challenge type offered");
        let key_auth = challenge.key_authorization();
        let name = match challenge.identifier().identifier {
            Identifier::Dns(d) => d.clone(),
            Identifier::Ip(ip) => ip.to_string(),
            _ => unreachable!(),
        };
        match kind {
            ChallengeType::Http01 => {
                if name.parse::<IpAddr>().is_err() {
                    t.dns.set_a(&name, &[LOOPBACK]);
                }
                http.set(&challenge.token, key_auth.as_str());
            }
            ChallengeType::Dns01 => t
                .dns
                .add_txt(&format!("_acme-challenge.{name}"), &key_auth.dns_value()),
            ChallengeType::TlsAlpn01 => {
                t.dns.set_a(&name, &[LOOPBACK]);
                alpn.push(
                    TlsAlpnResponder::start(t.tlsalpn01_port, &name, key_auth.as_str()).await,
                );
            }
            _ => unreachable!(),
        }
        challenge.set_ready().await.unwrap();
        // tls-alpn-01 responders share one port: answer them one at a time.
        if kind == ChallengeType::TlsAlpn01 {
            wait_validations(t).await;
            alpn.clear();
        }
    }
    let status = order.poll_ready(&retry()).await.unwrap();
    assert_eq!(status, OrderStatus::Ready, "{:?}", order.state());
    order.finalize().await.unwrap();
    order.poll_certificate(&retry()).await.unwrap()
}

async fn wait_validations(t: &TestHub) {
    // Validation runs in the background; give it a moment per attempt.
    for _ in 0..100 {
        if t.hub
            .store
            .processing_challenges()
            .await
            .unwrap()
            .is_empty()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("validation did not finish");
}

#[tokio::test]
async fn http01_issue_download_revoke_crl_and_ari() {
    for db in databases() {
        let t = TestHub::start(db).await;
        let account = t.account().await;
        let chain = issue(
            &t,
            &account,
            vec![Identifier::Dns("web.example.test".into())],
            ChallengeType::Http01,
        )
        .await;
        let (sans, leaf) = verify_chain(&chain, &t.root_pem);
        assert_eq!(sans, vec!["web.example.test"], "{db:?}");

        // ARI: a window inside the certificate's lifetime
        let ari = acmehub::ca::ari_cert_id(&leaf).unwrap();
        let response = t
            .http()
            .get(t.url(&format!("/acme/default/renewal-info/{ari}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("retry-after"));
        let info: serde_json::Value = response.json().await.unwrap();
        let start =
            acmehub::util::parse_rfc3339(info["suggestedWindow"]["start"].as_str().unwrap())
                .unwrap();
        let end =
            acmehub::util::parse_rfc3339(info["suggestedWindow"]["end"].as_str().unwrap()).unwrap();
        let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
        assert!(
            start < end
                && end < cert.validity().not_after.timestamp()
                && start > acmehub::util::now()
        );

        // revoke with the account key, then again: alreadyRevoked
        let der = rustls_pki_types::CertificateDer::from(leaf.clone());
        let request = RevocationRequest {
            certificate: &der,
            reason: Some(RevocationReason::KeyCompromise),
        };
        account.revoke(&request).await.unwrap();
        let again = account.revoke(&request).await.unwrap_err();
        assert!(
            again.to_string().contains("alreadyRevoked")
                || format!("{again:?}").contains("alreadyRevoked"),
            "{again:?}"
        );

        // the CRL named in the certificate lists it, signed by the intermediate
        let crl_url =
            cert.extensions()
                .iter()
                .find_map(|e| match e.parsed_extension() {
                    ParsedExtension::CRLDistributionPoints(points) => points
                        .points
                        .first()
                        .and_then(|p| match &p.distribution_point {
                            Some(DistributionPointName::FullName(names)) => {
                                names.iter().find_map(|n| match n {
                                    GeneralName::URI(u) => Some(u.to_string()),
                                    _ => None,
                                })
                            }
                            _ => None,
                        }),
                    _ => None,
                })
                .expect("CRL distribution point");
        assert_eq!(crl_url, t.url("/ca/crl"));
        let crl = t
            .http()
            .get(&crl_url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let (_, crl) = CertificateRevocationList::from_der(&crl).unwrap();
        let revoked: Vec<_> = crl
            .iter_revoked_certificates()
            .map(|r| r.raw_serial().to_vec())
            .collect();
        assert_eq!(revoked, vec![cert.raw_serial().to_vec()]);
        let inter = pem_chain(&chain)[1].clone();
        let (_, inter) = X509Certificate::from_der(&inter).unwrap();
        crl.verify_signature(inter.public_key())
            .expect("CRL signed by the intermediate");

        // ARI now asks for renewal right away
        let info: serde_json::Value = t
            .http()
            .get(t.url(&format!("/acme/default/renewal-info/{ari}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let end =
            acmehub::util::parse_rfc3339(info["suggestedWindow"]["end"].as_str().unwrap()).unwrap();
        assert!(end <= acmehub::util::now() + 1);
        t.stop().await;
    }
}

#[tokio::test]
async fn operations_endpoints_report_health_and_metrics() {
    let t = TestHub::start(Db::Sqlite).await;
    let account = t.account().await;
    issue(
        &t,
        &account,
        vec![Identifier::Dns("metrics.example.test".into())],
        ChallengeType::Dns01,
    )
    .await;
    let http = t.http();
    assert_eq!(
        http.get(t.url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        http.get(t.url("/readyz")).send().await.unwrap().status(),
        200
    );
    let metrics = http
        .get(t.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "acmehub_http_requests_total{endpoint=\"/acme/{instance}/new-order\"",
        "acmehub_http_request_duration_seconds_bucket",
        "acmehub_certificates_issued_total",
        "acmehub_challenge_outcomes_total{type=\"dns-01\",outcome=\"valid\"}",
        "acmehub_orders_created_total",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from /metrics");
    }
    t.stop().await;
}

#[tokio::test]
async fn dns01_wildcard_and_apex_in_one_order() {
    for db in databases() {
        let t = TestHub::start(db).await;
        let account = t.account().await;
        let chain = issue(
            &t,
            &account,
            vec![
                Identifier::Dns("*.example.test".into()),
                Identifier::Dns("example.test".into()),
            ],
            ChallengeType::Dns01,
        )
        .await;
        let (mut sans, _) = verify_chain(&chain, &t.root_pem);
        sans.sort();
        assert_eq!(sans, vec!["*.example.test", "example.test"]);
        t.stop().await;
    }
}

#[tokio::test]
async fn dns01_follows_a_cname() {
    let t = TestHub::start(Db::Sqlite).await;
    let account = t.account().await;
    let identifiers = [Identifier::Dns("cname.example.test".into())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .unwrap();
    let mut authorizations = order.authorizations();
    let mut authz = authorizations.next().await.unwrap().unwrap();
    let mut challenge = authz.challenge(ChallengeType::Dns01).unwrap();
    t.dns.set_cname(
        "_acme-challenge.cname.example.test",
        "delegated.acme.example.net",
    );
    t.dns.add_txt(
        "delegated.acme.example.net",
        &challenge.key_authorization().dns_value(),
    );
    challenge.set_ready().await.unwrap();
    assert_eq!(
        order.poll_ready(&retry()).await.unwrap(),
        OrderStatus::Ready
    );
    t.stop().await;
}

#[tokio::test]
async fn tlsalpn01_issuance() {
    let t = TestHub::start(Db::Sqlite).await;
    let account = t.account().await;
    let chain = issue(
        &t,
        &account,
        vec![Identifier::Dns("tls.example.test".into())],
        ChallengeType::TlsAlpn01,
    )
    .await;
    let (sans, _) = verify_chain(&chain, &t.root_pem);
    assert_eq!(sans, vec!["tls.example.test"]);
    t.stop().await;
}

#[tokio::test]
async fn ip_identifier_over_http01() {
    let t = TestHub::start(Db::Sqlite).await;
    let account = t.account().await;
    let chain = issue(
        &t,
        &account,
        vec![Identifier::Ip(LOOPBACK)],
        ChallengeType::Http01,
    )
    .await;
    let (sans, _) = verify_chain(&chain, &t.root_pem);
    assert_eq!(sans, vec!["ip:[127, 0, 0, 1]"]);
    t.stop().await;
}

#[tokio::test]
async fn a_wrong_answer_makes_the_order_invalid_with_a_reason() {
    for db in databases() {
        let t = TestHub::start(db).await;
        let account = t.account().await;
        let identifiers = [Identifier::Dns("wrong.example.test".into())];
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .unwrap();
        t.dns.set_a("wrong.example.test", &[LOOPBACK]);
        let http = Http01Responder::start(t.http01_port).await;
        let mut authorizations = order.authorizations();
        let mut authz = authorizations.next().await.unwrap().unwrap();
        let mut challenge = authz.challenge(ChallengeType::Http01).unwrap();
        http.set(
            &challenge.token,
            "not-the-key-authorization-but-a-secret-body",
        );
        // The validation may already have failed when the reply is built.
        let _ = challenge.set_ready().await;
        // instant-acme reports an invalid order's error as the poll's error
        let Err(error) = order.poll_ready(&retry()).await else {
            panic!("the order must not become ready")
        };
        assert_eq!(order.state().status, OrderStatus::Invalid);
        let text = format!("{error:?}");
        assert!(text.contains("incorrectResponse"), "{text}");
        assert!(text.contains("wrong.example.test"), "{text}");
        assert!(
            !text.contains("secret-body"),
            "the response body must not be echoed: {text}"
        );
        // finalizing an invalid order is refused
        let err = order.finalize().await.unwrap_err();
        assert!(format!("{err:?}").contains("orderNotReady"), "{err:?}");
        t.stop().await;
    }
}

#[tokio::test]
async fn a_restart_keeps_the_ca_accounts_and_orders() {
    let t = TestHub::start(Db::Sqlite).await;
    let root_before = std::fs::read(&t.root_pem).unwrap();
    let (account, credentials) = t
        .builder()
        .create(
            &instant_acme::NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            t.directory.clone(),
            None,
        )
        .await
        .unwrap();
    let identifiers = [Identifier::Dns("keep.example.test".into())];
    let order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .unwrap();
    let order_url = order.url().to_string();
    // a nonce handed out before the restart (SQLite: one process) is
    // refused after it with badNonce and a fresh nonce, which works, once
    let nonce = crate::raw::Raw::new(&t).nonce().await;
    // stop the server and open the same data directory again on the same port
    let config = t.hub.config.clone();
    let mut t = t;
    t.server.take().unwrap().shutdown().await;
    drop(t.hub.clone());
    let hub = acmehub::bootstrap::open(config.clone()).await.unwrap();
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let server = acmehub::server::Server::start(hub, listener).await.unwrap();
    assert_eq!(
        std::fs::read(&t.root_pem).unwrap(),
        root_before,
        "the root CA is reused"
    );
    let account = t.builder().from_credentials(credentials).await.unwrap();
    let mut order = account.order(order_url).await.unwrap();
    assert_eq!(order.refresh().await.unwrap().status, OrderStatus::Pending);
    let raw = crate::raw::Raw::new(&t);
    let new_account = t.url("/acme/default/new-account");
    let header = serde_json::json!({"alg": "ES256", "nonce": nonce, "url": new_account, "jwk": raw.key.jwk()});
    let body = crate::raw::jws(&raw.key, &header, r#"{"termsOfServiceAgreed":true}"#).to_string();
    let stale = raw.send(&new_account, body).await;
    assert_eq!(stale.problem_type(), "urn:ietf:params:acme:error:badNonce");
    assert!(
        stale.text.contains("since it last started"),
        "{}",
        stale.text
    );
    let nonce = stale.headers["replay-nonce"].to_str().unwrap();
    let header = serde_json::json!({"alg": "ES256", "nonce": nonce, "url": new_account, "jwk": raw.key.jwk()});
    let body = crate::raw::jws(&raw.key, &header, r#"{"termsOfServiceAgreed":true}"#).to_string();
    assert_eq!(raw.send(&new_account, body.clone()).await.status, 201);
    let replay = raw.send(&new_account, body).await;
    assert_eq!(replay.problem_type(), "urn:ietf:params:acme:error:badNonce");
    server.shutdown().await;
}

#[tokio::test]
async fn key_rollover_and_deactivation() {
    let t = TestHub::start(Db::Sqlite).await;
    let (mut account, old_credentials) = t
        .builder()
        .create(
            &instant_acme::NewAccount {
                contact: &["mailto:a@example.test"],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            t.directory.clone(),
            None,
        )
        .await
        .unwrap();
    let new_credentials = account.update_key().await.unwrap();
    // the new key works, the old one no longer does
    let identifiers = [Identifier::Dns("roll.example.test".into())];
    account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .unwrap();
    let old = t.builder().from_credentials(old_credentials).await.unwrap();
    let Err(err) = old.new_order(&NewOrder::new(&identifiers)).await else {
        panic!("old key still works")
    };
    assert!(
        format!("{err:?}").contains("unauthorized")
            || format!("{err:?}").contains("accountDoesNotExist"),
        "{err:?}"
    );
    account
        .update_contacts(&["mailto:b@example.test"])
        .await
        .unwrap();
    let bad = account
        .update_contacts(&["tel:+15555550100"])
        .await
        .unwrap_err();
    assert!(format!("{bad:?}").contains("unsupportedContact"), "{bad:?}");
    account.deactivate().await.unwrap();
    let account = t.builder().from_credentials(new_credentials).await.unwrap();
    let Err(err) = account.new_order(&NewOrder::new(&identifiers)).await else {
        panic!("deactivated account still orders")
    };
    assert!(format!("{err:?}").contains("deactivated"), "{err:?}");
    t.stop().await;
}

/// A challenge whose validation ends within `[validation] answer_within_ms`
/// is answered with its outcome, and the order is ready at the client's
/// next request: no polling round. With 0 the answer is `processing` at
/// once, with the Retry-After a client polls by.
#[tokio::test]
async fn a_quick_validation_is_answered_with_its_outcome() {
    for db in databases() {
        for wait_ms in [1000, 0] {
            let t = TestHub::start_with(db, |f| f.validation.answer_within_ms = wait_ms).await;
            let mut raw = crate::raw::Raw::new(&t);
            raw.register().await;
            let name = "quick.example.test";
            let created = raw
                .post(
                    &t.url("/acme/default/new-order"),
                    &serde_json::json!({"identifiers": [{"type": "dns", "value": name}]})
                        .to_string(),
                )
                .await;
            assert_eq!(created.status, 201, "{}", created.text);
            let order_url = created.headers["location"].to_str().unwrap().to_string();
            let authz_url = created.body["authorizations"][0].as_str().unwrap();
            let authz = raw.post(authz_url, "").await;
            let challenge = authz.body["challenges"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "dns-01")
                .unwrap()
                .clone();
            let key_authorization = format!(
                "{}.{}",
                challenge["token"].as_str().unwrap(),
                raw.key.thumbprint()
            );
            let digest = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes());
            t.dns.add_txt(
                &format!("_acme-challenge.{name}"),
                &crate::raw::b64(digest.as_ref()),
            );
            let answer = raw.post(challenge["url"].as_str().unwrap(), "{}").await;
            assert_eq!(answer.status, 200, "{}", answer.text);
            let order = raw.post(&order_url, "").await;
            if wait_ms > 0 {
                assert_eq!(answer.body["status"], "valid", "{}", answer.text);
                assert!(answer.body["validated"].is_string(), "{}", answer.text);
                assert!(!answer.headers.contains_key("retry-after"));
                assert_eq!(order.body["status"], "ready", "{}", order.text);
            } else {
                assert_eq!(answer.body["status"], "processing", "{}", answer.text);
                assert_eq!(answer.headers["retry-after"], "1");
                wait_validations(&t).await;
            }
            // What the answer said is what the challenge reads afterwards.
            let read = raw.post(challenge["url"].as_str().unwrap(), "").await;
            assert_eq!(read.body["status"], "valid", "{}", read.text);
            if wait_ms > 0 {
                assert_eq!(read.body, answer.body);
            }
            t.stop().await;
        }
    }
}
