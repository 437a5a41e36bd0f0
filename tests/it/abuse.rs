//! What a client that does not behave can do to the hub: each test is a
//! finding of the abuse review, reproduced as the attacker did it, with
//! what the hub must answer instead.

use instant_acme::{ChallengeType, Identifier, NewOrder, OrderStatus};
use serde_json::json;

use crate::harness::*;
use crate::raw::Raw;

fn retry() -> instant_acme::RetryPolicy {
    instant_acme::RetryPolicy::new()
        .initial_delay(std::time::Duration::from_millis(20))
        .timeout(std::time::Duration::from_secs(20))
}

/// An order for `name` on the default instance made ready over dns-01;
/// returns its id and its account's id.
async fn ready_order(t: &TestHub, account: &instant_acme::Account, name: &str) -> (String, String) {
    let ids = [Identifier::Dns(name.to_string())];
    let mut order = account.new_order(&NewOrder::new(&ids)).await.unwrap();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.unwrap();
        let mut challenge = authz.challenge(ChallengeType::Dns01).unwrap();
        let value = challenge.key_authorization().dns_value();
        t.dns.add_txt(&format!("_acme-challenge.{name}"), &value);
        challenge.set_ready().await.unwrap();
    }
    assert_eq!(
        order.poll_ready(&retry()).await.unwrap(),
        OrderStatus::Ready
    );
    let order_id = order.url().rsplit('/').next().unwrap().to_string();
    let account_id = account.id().rsplit('/').next().unwrap().to_string();
    (order_id, account_id)
}

/// Orders of the default instance, through the admin API.
async fn admin_orders(t: &TestHub) -> Vec<serde_json::Value> {
    let r = t
        .http()
        .get(t.url("/api/v1/instances/default/orders"))
        .bearer_auth(t.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    body.as_array()
        .or_else(|| body["items"].as_array())
        .cloned()
        .unwrap_or_default()
}

/// Finding 1: a `notAfter` in the past reached the signer, which failed
/// and left a `signing` row that stopped the next start. It is refused at
/// newOrder now, as is every window the CA cannot sign, and nothing is
/// stored.
#[tokio::test]
async fn unsignable_validity_windows_are_refused_at_new_order() {
    for db in databases() {
        let t = TestHub::start(db).await;
        let mut raw = Raw::new(&t);
        raw.register().await;
        let url = t.url("/acme/default/new-order");
        let far = acmehub::util::rfc3339(acmehub::util::now() + 20 * 365 * 86400);
        let soon = acmehub::util::rfc3339(acmehub::util::now() + 86400);
        let cases = [
            (json!({"notAfter": "2001-01-01T00:00:00Z"}), "in the past"),
            (
                json!({"notBefore": soon, "notAfter": acmehub::util::rfc3339(acmehub::util::now() + 600)}),
                "later than notBefore",
            ),
            (json!({"notAfter": far}), "day certificate lifetime"),
            (json!({"notBefore": "2001-01-01T00:00:00Z"}), "notBefore"),
        ];
        for (window, why) in cases {
            let mut payload = json!({"identifiers": [{"type": "dns", "value": "w.example.test"}]});
            for (k, v) in window.as_object().unwrap() {
                payload[k] = v.clone();
            }
            let reply = raw.post(&url, &payload.to_string()).await;
            assert_eq!(reply.status, 400, "{window}: {}", reply.text);
            assert_eq!(reply.problem_type(), "urn:ietf:params:acme:error:malformed");
            let detail = reply.body["detail"].as_str().unwrap();
            assert!(detail.contains(why), "{window}: {detail}");
        }
        assert!(
            admin_orders(&t).await.is_empty(),
            "a refused order was stored"
        );
        t.stop().await;
    }
}

/// Finding 1: whatever reaches the signer and fails leaves the order
/// invalid with its error and the certificate row final; a start resumes
/// every other interrupted signing and never fails because of one order.
#[tokio::test]
async fn a_signing_that_fails_cannot_stop_a_start() {
    for db in databases() {
        let (url, _dir) = shared_database(db).await;
        let key = master_key();
        let t = TestHub::replica(&url, &key).await;
        let account = t.account().await;
        let (bad, account_id) = ready_order(&t, &account, "bad.example.test").await;
        let (good, _) = ready_order(&t, &account, "good.example.test").await;
        // What a process that died mid-finalize (or an earlier version that
        // let such a window through) leaves behind: intents recorded, never
        // signed. The first cannot be signed at all.
        let now = acmehub::util::now();
        let spki =
            rcgen::PublicKeyData::subject_public_key_info(&rcgen::KeyPair::generate().unwrap());
        let intent = |order: &str, name: &str, serial: &str, not_after: i64| {
            acmehub::store::CertificateIntent {
                instance_id: "default".into(),
                account_id: account_id.clone(),
                order_id: order.into(),
                serial: serial.into(),
                issuer: acmehub::store::CertificateIssuer::Local,
                identifiers: vec![acmehub::policy::Identifier::dns(name).unwrap()],
                spki: spki.clone(),
                not_before: now - 60,
                not_after,
            }
        };
        let instance = t
            .hub
            .store
            .instance_by_name("default")
            .await
            .unwrap()
            .unwrap();
        let stuck = t
            .hub
            .store
            .begin_issuance(&acmehub::store::CertificateIntent {
                instance_id: instance.id.clone(),
                ..intent(&bad, "bad.example.test", "7a01", 978_307_200)
            })
            .await
            .unwrap();
        let waiting = t
            .hub
            .store
            .begin_issuance(&acmehub::store::CertificateIntent {
                instance_id: instance.id.clone(),
                ..intent(&good, "good.example.test", "7a02", now + 86400)
            })
            .await
            .unwrap();
        t.stop().await;

        // The restart that used to exit with "resuming interrupted work".
        let t = TestHub::replica(&url, &key).await;
        if db == Db::Postgres {
            // A shared database's start takes over only work past its
            // deadline (a live replica may own the rest): sweep it all, as
            // the periodic sweep does once the deadline has passed.
            acmehub::orders::take_over_stale(&t.hub, true)
                .await
                .unwrap();
        }
        let store = &t.hub.store;
        let order = store.order(&instance.id, &bad).await.unwrap().unwrap();
        assert_eq!(order.status, acmehub::store::OrderStatus::Invalid);
        let error = order.error.expect("the failed order carries its error");
        assert!(error.contains("malformed"), "{error}");
        let cert = store
            .certificate(&instance.id, &stuck.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cert.status, acmehub::store::CertificateStatus::Failed);
        // The work queued behind the failed one was done all the same.
        let cert = store
            .certificate(&instance.id, &waiting.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cert.status, acmehub::store::CertificateStatus::Valid);
        let order = store.order(&instance.id, &good).await.unwrap().unwrap();
        assert_eq!(order.status, acmehub::store::OrderStatus::Valid);
        // The failure is in the audit log, and nothing is left to resume.
        assert!(
            store
                .unsigned_certificates(i64::MAX, i64::MAX)
                .await
                .unwrap()
                .iter()
                .all(|(c, _)| c.id != stuck.id)
        );
        t.stop().await;
    }
}

/// Finding 3: RFC 8555 §6.4 asks the JWS `url` to equal the request URL,
/// query string included. The order list's own `next` link used to answer
/// 403, and a request signed for one URL was accepted at another.
#[tokio::test]
async fn the_jws_url_covers_the_query_string_and_next_links_work() {
    let t = TestHub::start(Db::Sqlite).await;
    let mut raw = Raw::new(&t);
    raw.register().await;
    let new_order = t.url("/acme/default/new-order");
    for i in 0..101 {
        let payload =
            json!({"identifiers": [{"type": "dns", "value": format!("n{i}.example.test")}]});
        let reply = raw.post(&new_order, &payload.to_string()).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    let list = format!("{}/orders", raw.kid.as_deref().unwrap());
    let first = raw.post(&list, "").await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["orders"].as_array().unwrap().len(), 100);
    let link = first.headers["link"].to_str().unwrap().to_string();
    let next = link
        .split(',')
        .find(|l| l.contains("rel=\"next\""))
        .and_then(|l| l.split(['<', '>']).nth(1))
        .expect("a next link")
        .to_string();
    assert!(next.ends_with("?page=1"), "{next}");
    let second = raw.post(&next, "").await;
    assert_eq!(
        second.status, 200,
        "the next link must work: {}",
        second.text
    );
    assert_eq!(second.body["orders"].as_array().unwrap().len(), 1);

    // Signed for the list without the query, sent with it.
    let header = raw.header(&list).await;
    let body = crate::raw::jws(&raw.key, &header, "").to_string();
    let reply = raw.send(&next, body).await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert_eq!(
        reply.problem_type(),
        "urn:ietf:params:acme:error:unauthorized"
    );

    // A page that is not a number is an error, not page 0.
    let bad = format!("{list}?page=x");
    let reply = raw.post(&bad, "").await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    let huge = format!("{list}?page={}", i64::MAX);
    let reply = raw.post(&huge, "").await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    t.stop().await;
}

/// Finding 9: a refused newOrder (a name the access key does not allow, an
/// unknown profile) left no trace. Each is an audit event now, with who,
/// which key, from where, what and why, filtered by action in the events
/// API, and a flood of them is capped per account.
#[tokio::test]
async fn refused_orders_are_audited_and_a_flood_cannot_fill_the_log() {
    use crate::admin::{Api, dns, eab_account, instance_with_key, problem};
    let t = TestHub::start(Db::Sqlite).await;
    let api = Api::admin(&t);
    let (directory, kid, hmac) = instance_with_key(
        &api,
        json!({"name": "corp", "external_account_required": true}),
        json!({"name": "fleet", "allowed_identifiers": ["*.corp.test"], "validation": "pre-authorized"}),
    )
    .await;
    let eab = instant_acme::ExternalAccountKey::new(kid, &hmac);
    let account = eab_account(&t, &directory, Some(&eab)).await.unwrap();
    let p = problem(
        account
            .new_order(&NewOrder::new(&dns(&["bank.example"])))
            .await,
    );
    assert_eq!(
        p.r#type.as_deref(),
        Some("urn:ietf:params:acme:error:rejectedIdentifier")
    );
    let p = problem(
        account
            .new_order(&NewOrder::new(&dns(&["a.corp.test"])).profile("no-such-profile"))
            .await,
    );
    assert_eq!(
        p.r#type.as_deref(),
        Some("urn:ietf:params:acme:error:invalidProfile")
    );

    let events = api.get("/api/v1/events?action=order.refuse").await.body;
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{events}");
    let rejected = items
        .iter()
        .find(|e| e["detail"]["reason"] == "rejectedIdentifier")
        .unwrap_or_else(|| panic!("no rejectedIdentifier event: {events}"));
    assert_eq!(
        rejected["detail"]["identifiers"][0]["value"],
        "bank.example"
    );
    assert_eq!(rejected["detail"]["client"], "127.0.0.1");
    assert!(rejected["detail"]["access_key"].is_string(), "{rejected}");
    assert!(
        rejected["actor"]
            .as_str()
            .unwrap()
            .starts_with("acme-account:")
    );
    assert!(
        items
            .iter()
            .any(|e| e["detail"]["reason"] == "invalidProfile")
    );

    // A flood: every refusal is answered, only a few are written down.
    for i in 0..30 {
        let name = format!("n{i}.bank.example");
        assert!(
            account
                .new_order(&NewOrder::new(&dns(&[&name])))
                .await
                .is_err()
        );
    }
    let events = api
        .get("/api/v1/events?action=order.refuse&limit=100")
        .await
        .body;
    let n = events["items"].as_array().unwrap().len();
    // 32 refusals, written down at most 10 a minute: 10, or up to 20 when
    // the run straddles the turn of a minute.
    let cap = acmehub::hub::REFUSAL_EVENTS_PER_MINUTE as usize;
    assert!((cap..=2 * cap).contains(&n), "{n} events: {events}");
    t.stop().await;
}
