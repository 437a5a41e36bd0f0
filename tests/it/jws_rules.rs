//! Negative tests: every JWS rule of RFC 8555 §6.2–6.5 the hub enforces,
//! each broken on its own, plus the isolation of one account from another.

use serde_json::json;

use crate::harness::{Db, TestHub};
use crate::raw::{Raw, RawKey, b64, jws};

const MALFORMED: &str = "urn:ietf:params:acme:error:malformed";

#[tokio::test]
async fn jws_rules_are_enforced() {
    let t = TestHub::start(Db::Sqlite).await;
    let mut raw = Raw::new(&t);
    let new_account = t.url("/acme/default/new-account");
    let new_order = t.url("/acme/default/new-order");

    // wrong media type: 415
    let header = raw.header(&new_account).await;
    let body = jws(&raw.key, &header, "{}").to_string();
    let r = raw
        .send_typed(&new_account, body.clone(), "application/json")
        .await;
    assert_eq!(r.status, 415, "{}", r.text);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert!(
        r.headers.contains_key("replay-nonce"),
        "every ACME response carries a nonce"
    );

    // general JSON serialization (signatures array) is refused
    let general = json!({"payload": b64(b"{}"), "signatures": [{"protected": b64(header.to_string().as_bytes()), "signature": "AA"}]});
    let r = raw.send(&new_account, general.to_string()).await;
    assert_eq!(r.problem_type(), MALFORMED, "{}", r.text);

    // an unprotected header is refused
    let mut with_header = jws(&raw.key, &raw.header(&new_account).await, "{}");
    with_header["header"] = json!({"kid": "x"});
    let r = raw.send(&new_account, with_header.to_string()).await;
    assert_eq!(r.problem_type(), MALFORMED, "{}", r.text);

    // alg none and HMAC: badSignatureAlgorithm
    for alg in ["none", "HS256", "ES512"] {
        let mut h = raw.header(&new_account).await;
        h["alg"] = json!(alg);
        let r = raw
            .send(&new_account, jws(&raw.key, &h, "{}").to_string())
            .await;
        assert_eq!(
            r.problem_type(),
            "urn:ietf:params:acme:error:badSignatureAlgorithm",
            "{alg}: {}",
            r.text
        );
    }

    // both jwk and kid
    let mut h = raw.header(&new_account).await;
    h["kid"] = json!(t.url("/acme/default/account/x"));
    let r = raw
        .send(&new_account, jws(&raw.key, &h, "{}").to_string())
        .await;
    assert_eq!(r.problem_type(), MALFORMED, "{}", r.text);

    // a bad signature
    let mut forged = jws(
        &raw.key,
        &raw.header(&new_account).await,
        r#"{"termsOfServiceAgreed":true}"#,
    );
    forged["payload"] = json!(b64(br#"{"termsOfServiceAgreed":false}"#));
    let r = raw.send(&new_account, forged.to_string()).await;
    assert_eq!(r.status, 403, "{}", r.text);

    // url must be the request URL under the public base
    let mut h = raw.header(&new_account).await;
    h["url"] = json!("https://evil.example/acme/default/new-account");
    let r = raw
        .send(&new_account, jws(&raw.key, &h, "{}").to_string())
        .await;
    assert_eq!(
        r.problem_type(),
        "urn:ietf:params:acme:error:unauthorized",
        "{}",
        r.text
    );

    // a missing nonce, then a replayed nonce: badNonce with a fresh nonce
    let mut h = raw.header(&new_account).await;
    h.as_object_mut().unwrap().remove("nonce");
    let r = raw
        .send(&new_account, jws(&raw.key, &h, "{}").to_string())
        .await;
    assert_eq!(
        r.problem_type(),
        "urn:ietf:params:acme:error:badNonce",
        "{}",
        r.text
    );
    let h = raw.header(&new_account).await;
    let body = jws(&raw.key, &h, r#"{"termsOfServiceAgreed":true}"#).to_string();
    assert_eq!(raw.send(&new_account, body.clone()).await.status, 201);
    let r = raw.send(&new_account, body).await;
    assert_eq!(
        r.problem_type(),
        "urn:ietf:params:acme:error:badNonce",
        "{}",
        r.text
    );
    assert!(r.headers.contains_key("replay-nonce"));

    // newAccount needs jwk; others need kid
    raw.register().await;
    let r = raw.post(&new_account, "{}").await;
    assert_eq!(r.problem_type(), MALFORMED, "kid on newAccount: {}", r.text);
    let kid = raw.kid.take();
    let r = raw
        .post(
            &new_order,
            r#"{"identifiers":[{"type":"dns","value":"a.example.test"}]}"#,
        )
        .await;
    assert_eq!(r.problem_type(), MALFORMED, "jwk on newOrder: {}", r.text);
    raw.kid = kid;

    // an unknown kid
    let mut h = raw.header(&new_order).await;
    h["kid"] = json!(t.url("/acme/default/account/doesnotexist"));
    let r = raw
        .send(&new_order, jws(&raw.key, &h, "{}").to_string())
        .await;
    assert_eq!(
        r.problem_type(),
        "urn:ietf:params:acme:error:accountDoesNotExist",
        "{}",
        r.text
    );

    // POST-as-GET must have an exactly empty payload
    let r = raw
        .post(
            &new_order,
            r#"{"identifiers":[{"type":"dns","value":"a.example.test"}]}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let order_url = r.headers["location"].to_str().unwrap().to_string();
    assert_eq!(raw.post(&order_url, "").await.status, 200);
    let r = raw.post(&order_url, "{}").await;
    assert_eq!(r.problem_type(), MALFORMED, "{}", r.text);

    // an oversized body
    let big = "x".repeat(70 * 1024);
    let r = raw.send(&new_order, big).await;
    assert_eq!(r.status, 413, "{}", r.text);
    t.stop().await;
}

#[tokio::test]
async fn weak_and_malformed_keys_are_refused() {
    let t = TestHub::start(Db::Sqlite).await;
    let raw = Raw::new(&t);
    let url = t.url("/acme/default/new-account");
    // a P-256 "key" that is not on the curve
    let mut h = raw.header(&url).await;
    h["jwk"] = json!({"kty": "EC", "crv": "P-256", "x": b64(&[1u8; 32]), "y": b64(&[2u8; 32])});
    let r = raw.send(&url, jws(&raw.key, &h, "{}").to_string()).await;
    assert_eq!(
        r.problem_type(),
        "urn:ietf:params:acme:error:badPublicKey",
        "{}",
        r.text
    );
    // a 1024-bit RSA key
    let mut h = raw.header(&url).await;
    h["alg"] = json!("RS256");
    h["jwk"] = json!({"kty": "RSA", "e": "AQAB", "n": b64(&[0xc5u8; 128])});
    let r = raw.send(&url, jws(&raw.key, &h, "{}").to_string()).await;
    assert_eq!(
        r.problem_type(),
        "urn:ietf:params:acme:error:badPublicKey",
        "{}",
        r.text
    );
    t.stop().await;
}

#[tokio::test]
async fn one_account_cannot_see_another_accounts_objects() {
    let t = TestHub::start(Db::Sqlite).await;
    let mut alice = Raw::new(&t);
    alice.register().await;
    let mut mallory = Raw::new(&t);
    mallory.register().await;
    let r = alice
        .post(
            &t.url("/acme/default/new-order"),
            r#"{"identifiers":[{"type":"dns","value":"alice.example.test"}]}"#,
        )
        .await;
    let order_url = r.headers["location"].to_str().unwrap().to_string();
    let authz_url = r.body["authorizations"][0].as_str().unwrap().to_string();
    let authz = alice.post(&authz_url, "").await;
    let chall_url = authz.body["challenges"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    for url in [&order_url, &authz_url, &chall_url] {
        let r = mallory.post(url, "").await;
        assert_eq!(r.status, 404, "{url}: {}", r.text);
        assert!(!r.text.contains("alice.example.test"));
    }
    // answering alice's challenge is refused too, and changes nothing
    let r = mallory.post(&chall_url, "{}").await;
    assert_eq!(r.status, 404);
    assert_eq!(alice.post(&chall_url, "").await.body["status"], "pending");
    // nor can mallory read alice's account or list her orders
    let alice_kid = alice.kid.clone().unwrap();
    assert_eq!(mallory.post(&alice_kid, "").await.status, 403);
    assert_eq!(
        mallory
            .post(&format!("{alice_kid}/orders"), "")
            .await
            .status,
        403
    );
    // alice's own order list has her order
    let list = alice.post(&format!("{alice_kid}/orders"), "").await;
    assert_eq!(list.body["orders"][0], order_url);
    t.stop().await;
}

#[tokio::test]
async fn bad_orders_and_csrs_are_refused_with_reasons() {
    let t = TestHub::start(Db::Sqlite).await;
    let mut raw = Raw::new(&t);
    raw.register().await;
    let new_order = t.url("/acme/default/new-order");
    // per-identifier subproblems
    let r = raw
        .post(&new_order, r#"{"identifiers":[{"type":"dns","value":"ok.example.test"},{"type":"dns","value":"bad_name.example.test"},{"type":"dns","value":"*.*.example.test"}]}"#)
        .await;
    assert_eq!(
        r.problem_type(),
        "urn:ietf:params:acme:error:rejectedIdentifier",
        "{}",
        r.text
    );
    assert_eq!(
        r.body["subproblems"].as_array().unwrap().len(),
        2,
        "{}",
        r.text
    );
    assert_eq!(
        r.body["subproblems"][0]["identifier"]["value"],
        "bad_name.example.test"
    );
    let r = raw
        .post(
            &new_order,
            r#"{"identifiers":[{"type":"email","value":"a@example.test"}]}"#,
        )
        .await;
    assert_eq!(
        r.problem_type(),
        "urn:ietf:params:acme:error:unsupportedIdentifier",
        "{}",
        r.text
    );
    let r = raw.post(&new_order, r#"{"identifiers":[]}"#).await;
    assert_eq!(r.problem_type(), MALFORMED, "{}", r.text);

    // finalize before the order is ready
    let r = raw
        .post(
            &new_order,
            r#"{"identifiers":[{"type":"dns","value":"a.example.test"}]}"#,
        )
        .await;
    let finalize = r.body["finalize"].as_str().unwrap().to_string();
    let csr = csr_for(&["a.example.test"]);
    let r = raw
        .post(&finalize, &json!({"csr": b64(&csr)}).to_string())
        .await;
    assert_eq!(
        r.problem_type(),
        "urn:ietf:params:acme:error:orderNotReady",
        "{}",
        r.text
    );
    t.stop().await;
}

fn csr_for(names: &[&str]) -> Vec<u8> {
    csr_with_key(names, &rcgen::KeyPair::generate().unwrap())
}

fn csr_with_key(names: &[&str], key: &rcgen::KeyPair) -> Vec<u8> {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.serialize_request(key).unwrap().der().to_vec()
}

#[tokio::test]
async fn finalize_checks_the_csr_against_the_order() {
    let t = TestHub::start(Db::Sqlite).await;
    let mut raw = Raw::new(&t);
    raw.register().await;
    let r = raw
        .post(
            &t.url("/acme/default/new-order"),
            r#"{"identifiers":[{"type":"dns","value":"csr.example.test"}]}"#,
        )
        .await;
    let order_url = r.headers["location"].to_str().unwrap().to_string();
    let finalize = r.body["finalize"].as_str().unwrap().to_string();
    let authz = raw
        .post(r.body["authorizations"][0].as_str().unwrap(), "")
        .await;
    let http01 = authz.body["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "http-01")
        .unwrap()
        .clone();
    let token = http01["token"].as_str().unwrap();
    let responder = crate::harness::Http01Responder::start(t.http01_port).await;
    responder.set(token, &format!("{token}.{}", raw.key.thumbprint()));
    t.dns
        .set_a("csr.example.test", &["127.0.0.1".parse().unwrap()]);
    let r = raw.post(http01["url"].as_str().unwrap(), "{}").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut status = String::new();
    for _ in 0..100 {
        status = raw.post(&order_url, "").await.body["status"]
            .as_str()
            .unwrap()
            .to_string();
        if status != "pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, "ready");

    // names that differ from the order
    for names in [
        &["other.example.test"][..],
        &["csr.example.test", "extra.example.test"][..],
    ] {
        let r = raw
            .post(&finalize, &json!({"csr": b64(&csr_for(names))}).to_string())
            .await;
        assert_eq!(
            r.problem_type(),
            "urn:ietf:params:acme:error:badCSR",
            "{}",
            r.text
        );
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap()
                .contains("csr.example.test"),
            "{}",
            r.text
        );
    }
    // the account key as certificate key
    let account_key = rcgen::KeyPair::try_from(raw.key.pkcs8.as_slice()).unwrap();
    let r = raw
        .post(
            &finalize,
            &json!({"csr": b64(&csr_with_key(&["csr.example.test"], &account_key))}).to_string(),
        )
        .await;
    assert_eq!(
        r.problem_type(),
        "urn:ietf:params:acme:error:badCSR",
        "{}",
        r.text
    );
    assert!(
        r.body["detail"].as_str().unwrap().contains("account key"),
        "{}",
        r.text
    );
    // garbage
    let r = raw.post(&finalize, r#"{"csr":"AAAA"}"#).await;
    assert_eq!(
        r.problem_type(),
        "urn:ietf:params:acme:error:badCSR",
        "{}",
        r.text
    );
    // none of that changed the order; a good CSR now issues, once
    assert_eq!(raw.post(&order_url, "").await.body["status"], "ready");
    let r = raw
        .post(
            &finalize,
            &json!({"csr": b64(&csr_for(&["csr.example.test"]))}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "valid");
    let cert_url = r.body["certificate"].as_str().unwrap().to_string();
    let r = raw
        .post(
            &finalize,
            &json!({"csr": b64(&csr_for(&["csr.example.test"]))}).to_string(),
        )
        .await;
    assert_eq!(
        r.problem_type(),
        "urn:ietf:params:acme:error:orderNotReady",
        "{}",
        r.text
    );
    // the certificate downloads as a PEM chain with an alternate
    let cert = raw.post(&cert_url, "").await;
    assert_eq!(
        cert.headers["content-type"],
        "application/pem-certificate-chain"
    );
    assert_eq!(cert.text.matches("BEGIN CERTIFICATE").count(), 2);
    let links: Vec<_> = cert
        .headers
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let alternate = links
        .iter()
        .find(|l| l.contains("alternate"))
        .expect("alternate link");
    let alt_url = alternate.trim_start_matches('<').split('>').next().unwrap();
    assert_eq!(
        raw.post(alt_url, "")
            .await
            .text
            .matches("BEGIN CERTIFICATE")
            .count(),
        3
    );
    t.stop().await;
}

#[tokio::test]
async fn unknown_instance_is_a_404_problem() {
    let t = TestHub::start(Db::Sqlite).await;
    let r = t
        .http()
        .get(t.url("/acme/nope/directory"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let dir: serde_json::Value = t
        .http()
        .get(&t.directory)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dir["newNonce"], t.url("/acme/default/new-nonce"));
    assert_eq!(dir["meta"]["externalAccountRequired"], false);
    assert!(dir["renewalInfo"].is_string());
    let _ = RawKey::generate();
    t.stop().await;
}
