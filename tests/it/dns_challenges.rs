//! dns-account-01 and dns-persist-01 downstream, driven by a client of our
//! own (raw JWS), against the drafts as Let's Encrypt and Pebble serve them.

use serde_json::{Value, json};

use crate::admin::Api;
use crate::harness::*;
use crate::raw::{Raw, b64};

/// Orders `name` and returns (order, authorization) as the client reads them.
async fn order(raw: &Raw<'_>, name: &str) -> (Value, Value) {
    let reply = raw
        .post(
            &raw.t.url("/acme/default/new-order"),
            &json!({"identifiers": [{"type": "dns", "value": name}]}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let mut order = reply.body;
    order["url"] = json!(reply.headers["location"].to_str().unwrap());
    let authz = raw
        .post(order["authorizations"][0].as_str().unwrap(), "")
        .await;
    (order, authz.body)
}

/// The challenge types an authorization offers, sorted.
fn kinds(authz: &Value) -> Vec<String> {
    let mut kinds: Vec<String> = authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    kinds
}

fn challenge<'a>(authz: &'a Value, kind: &str) -> Option<&'a Value> {
    authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
}

/// Answers a challenge and waits until its authorization leaves `pending`.
async fn answer(raw: &Raw<'_>, authz_url: &str, challenge: &Value) -> Value {
    let reply = raw.post(challenge["url"].as_str().unwrap(), "{}").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    for _ in 0..200 {
        let authz = raw.post(authz_url, "").await.body;
        if authz["status"] != "pending" {
            return authz;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the authorization stayed pending");
}

/// Finalizes a ready order for `name` and returns its final state.
async fn finalize(raw: &Raw<'_>, order: &Value, name: &str) -> Value {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).unwrap();
    let reply = raw
        .post(
            order["finalize"].as_str().unwrap(),
            &json!({"csr": b64(csr.der())}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut state = reply.body;
    for _ in 0..200 {
        if state["status"] == "valid" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        state = raw.post(order["url"].as_str().unwrap(), "").await.body;
    }
    state
}

async fn offer_all(t: &TestHub) {
    let reply = Api::admin(t)
        .patch(
            "/api/v1/instances/default",
            json!({"allowed_challenges": ["http-01", "dns-01", "tls-alpn-01", "dns-account-01", "dns-persist-01"]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn the_new_dns_challenges_are_offered_only_when_an_instance_says_so() {
    let t = TestHub::start(Db::Sqlite).await;
    let mut raw = Raw::new(&t);
    raw.register().await;
    let (_, authz) = order(&raw, "off.example.test").await;
    assert_eq!(kinds(&authz), ["dns-01", "http-01", "tls-alpn-01"]);
    // A new instance offers the same three.
    let api = Api::admin(&t);
    let created = api
        .expect(201, "/api/v1/instances", json!({"name": "fresh"}))
        .await;
    assert_eq!(
        created["allowed_challenges"],
        json!(["http-01", "dns-01", "tls-alpn-01"])
    );
    offer_all(&t).await;
    let (_, authz) = order(&raw, "on.example.test").await;
    assert_eq!(authz["challenges"].as_array().unwrap().len(), 5);
    // A wildcard is offered the three DNS types.
    let reply = raw
        .post(
            &t.url("/acme/default/new-order"),
            &json!({"identifiers": [{"type": "dns", "value": "*.wild.example.test"}]}).to_string(),
        )
        .await;
    let authz = raw
        .post(reply.body["authorizations"][0].as_str().unwrap(), "")
        .await
        .body;
    assert_eq!(
        kinds(&authz),
        ["dns-01", "dns-account-01", "dns-persist-01"]
    );
    t.stop().await;
}

#[tokio::test]
async fn dns_persist_01_issues_while_the_record_names_the_account() {
    for db in databases() {
        let t = TestHub::start(db).await;
        offer_all(&t).await;
        let mut raw = Raw::new(&t);
        raw.register().await;
        let account = raw.kid.clone().unwrap();
        let name = "persist.example.test";
        let (order1, authz) = order(&raw, name).await;
        let c = challenge(&authz, "dns-persist-01").unwrap();
        // The -01 challenge object: no token, the issuer names, the account.
        assert!(c.get("token").is_none(), "{c}");
        assert_eq!(c["accounturi"], json!(account));
        let issuer = c["issuer-domain-names"][0].as_str().unwrap().to_string();
        assert!(!issuer.is_empty());
        // Another account's record first: the challenge fails, naming it.
        t.dns.add_txt(
            &format!("_validation-persist.{name}"),
            &format!("{issuer}; accounturi={account}-not"),
        );
        let failed = answer(&raw, order1["authorizations"][0].as_str().unwrap(), c).await;
        assert_eq!(failed["status"], "invalid");
        let error = &challenge(&failed, "dns-persist-01").unwrap()["error"];
        assert_eq!(
            error["type"], "urn:ietf:params:acme:error:unauthorized",
            "{error}"
        );
        assert!(
            error["detail"]
                .as_str()
                .unwrap()
                .contains("another account's"),
            "{error}"
        );
        // The right record, published once, serves every later order.
        t.dns.add_txt(
            &format!("_validation-persist.{name}"),
            &format!("{issuer}; accounturi={account}; policy=wildcard"),
        );
        for wanted in [name, "*.persist.example.test"] {
            let (order, authz) = order(&raw, wanted).await;
            let c = challenge(&authz, "dns-persist-01").unwrap();
            let done = answer(&raw, order["authorizations"][0].as_str().unwrap(), c).await;
            assert_eq!(done["status"], "valid", "{done}");
            let state = finalize(&raw, &order, wanted).await;
            assert_eq!(state["status"], "valid", "{state}");
            assert!(state["certificate"].is_string());
        }
        t.stop().await;
    }
}

#[tokio::test]
async fn dns_account_01_validates_under_the_accounts_own_label() {
    let t = TestHub::start(Db::Sqlite).await;
    offer_all(&t).await;
    let mut first = Raw::new(&t);
    first.register().await;
    let mut second = Raw::new(&t);
    second.register().await;
    let name = "shared.example.test";
    // Both accounts validate the same name at the same moment, each under
    // its own label: neither record overwrites the other.
    let mut pending = Vec::new();
    for raw in [&first, &second] {
        let (order, authz) = order(raw, name).await;
        let c = challenge(&authz, "dns-account-01").unwrap().clone();
        let token = c["token"].as_str().unwrap();
        let thumbprint = raw.key.thumbprint();
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            format!("{token}.{thumbprint}").as_bytes(),
        );
        let label =
            acmehub::validation::dns_account01::record_name(raw.kid.as_deref().unwrap(), name);
        assert!(label.starts_with('_') && label.ends_with("._acme-challenge.shared.example.test"));
        t.dns.add_txt(&label, &b64(digest.as_ref()));
        pending.push((order, c));
    }
    for (raw, (order, c)) in [&first, &second].into_iter().zip(&pending) {
        let done = answer(raw, order["authorizations"][0].as_str().unwrap(), c).await;
        assert_eq!(done["status"], "valid", "{done}");
    }
    // The plain dns-01 name proves nothing for dns-account-01.
    let mut third = Raw::new(&t);
    third.register().await;
    let (order, authz) = order(&third, "other.example.test").await;
    let c = challenge(&authz, "dns-account-01").unwrap();
    let token = c["token"].as_str().unwrap();
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{token}.{}", third.key.thumbprint()).as_bytes(),
    );
    t.dns
        .add_txt("_acme-challenge.other.example.test", &b64(digest.as_ref()));
    let failed = answer(&third, order["authorizations"][0].as_str().unwrap(), c).await;
    assert_eq!(failed["status"], "invalid");
    t.stop().await;
}
