//! Certificates the hub manages itself: draft → pending (the delegation
//! CNAME to create) → active, renewal with a new key, downloads and who may
//! have the key, and the same through the relay.

use std::time::Duration;

use serde_json::{Value, json};

use crate::admin::Api;
use crate::harness::*;

const ZONE: &str = "acme.hub.test";

pub(crate) async fn hub_with_zone(db: Db) -> TestHub {
    TestHub::start_with(db, |f| {
        f.dns.technical_zone = Some(acmehub::config::TechnicalZoneConfig {
            nameservers: vec!["ns1.hub.test".into()],
            ..acmehub::config::TechnicalZoneConfig::new(ZONE, "127.0.0.1:0".parse().unwrap())
        });
        f.dns.propagation_timeout_secs = 5;
    })
    .await
}

fn authoritative(t: &TestHub, zone: &str) {
    t.dns.add_ns(zone, &format!("ns1.{zone}"));
    t.dns
        .set_a(&format!("ns1.{zone}"), &["127.0.0.1".parse().unwrap()]);
}

/// Polls the managed certificate until `done` holds (20 s at most).
pub(crate) async fn wait_for(api: &Api<'_>, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = api.get(path).await.body;
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never reached the expected state: {last}");
}

async fn download(t: &TestHub, token: &str, path: &str) -> (u16, String) {
    let r = t
        .http()
        .get(t.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The SPKI of a PEM certificate, and of a PKCS#8 PEM key.
fn cert_spki(pem: &str) -> Vec<u8> {
    let der = pem_chain(pem).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.public_key().raw.to_vec()
}

fn key_spki(pem: &str) -> Vec<u8> {
    use rcgen::PublicKeyData;
    let key = rcgen::KeyPair::from_pem(pem).unwrap();
    key.subject_public_key_info()
}

#[tokio::test]
async fn a_managed_certificate_waits_for_its_cname_then_issues_and_renews_with_a_new_key() {
    for db in databases() {
        let t = hub_with_zone(db).await;
        let api = Api::admin(&t);
        let d = api
            .expect(
                201,
                "/api/v1/instances/default/delegations",
                json!({"domain": "m.customer.test"}),
            )
            .await;
        let target = d["cname_target"].as_str().unwrap().to_string();
        // Bad input changes nothing.
        for (body, field) in [
            (json!({"name": "x", "identifiers": []}), "identifiers"),
            (
                json!({"name": "x", "identifiers": ["192.0.2.1"]}),
                "identifiers",
            ),
            (
                json!({"name": "x", "identifiers": ["a.test"], "key_type": "dsa"}),
                "key_type",
            ),
            (
                json!({"name": "x", "identifiers": ["a.test"], "profile": "nope"}),
                "profile",
            ),
            (
                json!({"name": "bad name", "identifiers": ["a.test"]}),
                "name",
            ),
            (
                json!({"name": "x", "identifiers": ["a.test"], "renew_before_days": 0}),
                "renew_before_days",
            ),
        ] {
            let r = api
                .post("/api/v1/instances/default/certificates", body.clone())
                .await;
            assert_eq!(r.status, 400, "{body}: {}", r.body);
            assert_eq!(r.body["field"], field, "{body}");
        }
        let created = api
            .expect(
                201,
                "/api/v1/instances/default/certificates",
                json!({"name": "web", "identifiers": ["m.customer.test"], "tags": ["lb"]}),
            )
            .await;
        assert_eq!(created["key_type"], "ec-p256");
        assert_eq!(created["auto_renew"], true);
        let path = "/api/v1/instances/default/managed-certificates/web";
        // Without the CNAME it waits, and names the record to create.
        let pending = wait_for(&api, path, |m| m["status"] == "pending").await;
        assert_eq!(
            pending["missing"][0]["cname_name"],
            "_acme-challenge.m.customer.test"
        );
        assert_eq!(pending["missing"][0]["cname_target"], target);
        assert!(pending["certificate"].is_null());
        // The customer adds it; the next look (asked for at once) issues.
        authoritative(&t, "customer.test");
        t.dns.set_cname("_acme-challenge.m.customer.test", &target);
        api.post(&format!("{path}/renew"), json!({})).await;
        let active = wait_for(&api, path, |m| m["status"] == "active").await;
        let first = active["certificate"].clone();
        assert_eq!(first["issuer"], "local");
        assert_eq!(first["identifiers"][0]["value"], "m.customer.test");
        assert_eq!(active["history"][0]["event"], "issued", "{active}");
        assert!(active["missing"].as_array().unwrap().is_empty());
        // The renewal falls inside the local CA's ARI window (last third).
        let at = |v: &Value| acmehub::util::parse_rfc3339(v.as_str().unwrap()).unwrap();
        let (nb, na) = (at(&first["not_before"]), at(&first["not_after"]));
        let renewal = at(&active["next_renewal_at"]);
        assert!(
            renewal >= na - (na - nb) / 3 - 1 && renewal <= na - (na - nb) / 6 + 1,
            "{active}"
        );
        // It is in the inventory like any issued certificate.
        let inventory = api.get("/api/v1/instances/default/certificates").await.body;
        assert_eq!(inventory["items"][0]["id"], first["id"]);

        // Downloads: the certificate for a read token, the key only with write.
        let admin = t.admin_token();
        let (status, chain) = download(
            &t,
            &admin,
            "/api/v1/instances/default/certificates/web/download?format=fullchain",
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(pem_chain(&chain).len(), 2);
        let reader = api
            .expect(
                201,
                "/api/v1/tokens",
                json!({"name": "reader", "scope": "instance:default", "role": "read"}),
            )
            .await;
        let reader = reader["token"].as_str().unwrap();
        let (status, leaf) = download(
            &t,
            reader,
            "/api/v1/instances/default/certificates/web/download?format=pem",
        )
        .await;
        assert_eq!((status, pem_chain(&leaf).len()), (200, 1));
        let (status, body) = download(
            &t,
            reader,
            "/api/v1/instances/default/certificates/web/download?format=key",
        )
        .await;
        assert_eq!(status, 403, "{body}");
        assert!(!body.contains("PRIVATE KEY"));
        let (status, key) = download(
            &t,
            &admin,
            "/api/v1/instances/default/certificates/web/download?format=key",
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            key_spki(&key),
            cert_spki(&leaf),
            "the key is the certificate's"
        );
        // PKCS#12 with the caller's password, sent in a header, never the URL.
        let p12_url = t.url("/api/v1/instances/default/certificates/web/download?format=pkcs12");
        let p12 = |token: &str, password: Option<&str>, url: String| {
            let mut r = t.http().get(url).bearer_auth(token);
            if let Some(p) = password {
                r = r.header("x-password", p);
            }
            async move {
                let r = r.send().await.unwrap();
                (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
            }
        };
        assert_eq!(p12(&admin, None, p12_url.clone()).await.0, 400);
        assert_eq!(p12(&admin, Some("short"), p12_url.clone()).await.0, 400);
        assert_eq!(
            p12(&admin, None, format!("{p12_url}&password=in-the-url"))
                .await
                .0,
            400
        );
        assert_eq!(
            p12(reader, Some("correct horse"), p12_url.clone()).await.0,
            403
        );
        let (status, der) = p12(&admin, Some("correct horse"), p12_url.clone()).await;
        assert_eq!(status, 200);
        assert!(p12_keystore::KeyStore::from_pkcs12(&der, "wrong horse").is_err());
        let store = p12_keystore::KeyStore::from_pkcs12(&der, "correct horse").unwrap();
        let (_, chain) = store.private_key_chain().unwrap();
        assert_eq!(chain.chain().len(), 2);
        assert_eq!(chain.chain()[0].as_der(), pem_chain(&leaf)[0].as_slice());
        let events = api
            .get("/api/v1/events?action=managed.key_download")
            .await
            .body;
        assert_eq!(events["items"].as_array().unwrap().len(), 2, "{events}");
        // The view never carries the key.
        let shown = api.get(path).await.body.to_string();
        assert!(!shown.contains("PRIVATE KEY") && !shown.contains(key.lines().nth(1).unwrap()));

        // Renewing now: a new certificate with a new key and serial.
        let r = api.post(&format!("{path}/renew"), json!({})).await;
        assert_eq!(r.status, 202, "{}", r.body);
        let renewed = wait_for(&api, path, |m| {
            m["certificate"]["id"] != first["id"] && m["status"] == "active"
        })
        .await;
        assert_eq!(renewed["history"][1]["event"], "renewed", "{renewed}");
        assert_ne!(renewed["certificate"]["serial"], first["serial"]);
        let (_, key2) = download(
            &t,
            &admin,
            "/api/v1/instances/default/certificates/web/download?format=key",
        )
        .await;
        assert_ne!(key_spki(&key2), key_spki(&key), "a renewal makes a new key");
        // Settings that are fixed stay fixed.
        let r = api
            .patch(path, json!({"identifiers": ["other.customer.test"]}))
            .await;
        assert_eq!(r.status, 400);
        let r = api
            .patch(path, json!({"auto_renew": false, "keep_key": true}))
            .await;
        assert_eq!(
            (r.body["auto_renew"].clone(), r.body["keep_key"].clone()),
            (json!(false), json!(true))
        );
        assert_eq!(api.delete(path).await.status, 204);
        assert_eq!(api.get(path).await.status, 404);
        t.stop().await;
    }
}

#[tokio::test]
async fn a_managed_certificate_of_a_relaying_instance_comes_from_the_upstream_ca() {
    let upstream = TestHub::start(Db::Sqlite).await;
    let key = Api::admin(&upstream)
        .expect(
            201,
            "/api/v1/instances/default/access-keys",
            json!({"name": "hub", "allowed_identifiers": ["*.customer.test"], "validation": "pre-authorized"}),
        )
        .await;
    let t = hub_with_zone(Db::Sqlite).await;
    let api = Api::admin(&t);
    api.expect(
        201,
        "/api/v1/instances",
        json!({"name": "relay", "issuer": "upstream"}),
    )
    .await;
    api.expect(
        201,
        "/api/v1/instances/relay/ca-accounts",
        json!({"name": "up", "ca": "custom", "directory_url": upstream.directory,
               "trusted_roots_pem": std::fs::read_to_string(&upstream.root_pem).unwrap(),
               "eab_kid": key["kid"], "eab_hmac_key": key["hmac_key"]}),
    )
    .await;
    let d = api
        .expect(
            201,
            "/api/v1/instances/relay/delegations",
            json!({"domain": "u.customer.test"}),
        )
        .await;
    authoritative(&t, "customer.test");
    t.dns.set_cname(
        "_acme-challenge.u.customer.test",
        d["cname_target"].as_str().unwrap(),
    );
    api.expect(
        201,
        "/api/v1/instances/relay/certificates",
        json!({"name": "edge", "identifiers": ["u.customer.test"], "key_type": "rsa-2048"}),
    )
    .await;
    let active = wait_for(
        &api,
        "/api/v1/instances/relay/managed-certificates/edge",
        |m| m["status"] == "active",
    )
    .await;
    assert_eq!(active["certificate"]["issuer"], "ca-account:up", "{active}");
    let (_, leaf) = download(
        &t,
        &t.admin_token(),
        "/api/v1/instances/relay/certificates/edge/download?format=fullchain",
    )
    .await;
    let der = pem_chain(&leaf).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        cert.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION
    );
    t.stop().await;
    upstream.stop().await;
}

/// A webhook receiver on 127.0.0.1: records (headers, body) of each POST and
/// answers with the statuses given, then 200.
struct Receiver {
    url: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(mut statuses: Vec<u16>) -> Self {
        use axum::extract::State;
        type Got = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;
        let got: Got = Default::default();
        statuses.reverse();
        let statuses = std::sync::Arc::new(std::sync::Mutex::new(statuses));
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    |State((got, statuses)): State<(
                        Got,
                        std::sync::Arc<std::sync::Mutex<Vec<u16>>>,
                    )>,
                     headers: axum::http::HeaderMap,
                     body: String| async move {
                        let signature = headers
                            .get("x-acmehub-signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        got.lock().unwrap().push((signature, body));
                        let status = statuses.lock().unwrap().pop().unwrap_or(200);
                        axum::http::StatusCode::from_u16(status).unwrap()
                    },
                ),
            )
            .with_state((got.clone(), statuses));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, got, task }
    }

    /// The bodies received so far whose signature checks out with `secret`.
    fn events(&self, secret: &str) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(signature, body)| {
                assert_eq!(
                    signature,
                    &acmehub::notify::signature(secret.as_bytes(), body.as_bytes()),
                    "a bad signature on {body}"
                );
                serde_json::from_str(body).unwrap()
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_event(r: &Receiver, secret: &str, event: &str) -> Value {
    for _ in 0..150 {
        if let Some(e) = r.events(secret).into_iter().find(|e| e["event"] == event) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {event} notification: {:?}", r.events(secret));
}

#[tokio::test]
async fn webhooks_are_signed_and_tell_of_issuance_renewal_expiry_and_delegation_drift() {
    let t = hub_with_zone(Db::Sqlite).await;
    let api = Api::admin(&t);
    let receiver = Receiver::start(vec![500]).await;
    // Bad channels are refused, and change nothing.
    for (body, field) in [
        (json!({"name": "h", "kind": "pager"}), "kind"),
        (json!({"name": "h", "kind": "webhook"}), "url"),
        (
            json!({"name": "h", "kind": "webhook", "url": "ftp://x.test/"}),
            "url",
        ),
        (
            json!({"name": "h", "kind": "webhook", "url": receiver.url, "events": ["everything"]}),
            "events",
        ),
        (
            json!({"name": "h", "kind": "webhook", "url": receiver.url, "secret": "short"}),
            "secret",
        ),
        (
            json!({"name": "h", "kind": "email", "smtp_host": "mail.test", "from": "hub@x.test"}),
            "to",
        ),
        (
            json!({"name": "h", "kind": "email", "smtp_host": "mail.test", "from": "not an address", "to": ["a@x.test"]}),
            "from",
        ),
    ] {
        let r = api
            .post(
                "/api/v1/instances/default/notification-channels",
                body.clone(),
            )
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.body["field"], field, "{body}");
    }
    let channel = api
        .expect(
            201,
            "/api/v1/instances/default/notification-channels",
            json!({"name": "hook", "kind": "webhook", "url": receiver.url}),
        )
        .await;
    let secret = channel["secret"].as_str().unwrap().to_string();
    let listed = api
        .get("/api/v1/instances/default/notification-channels")
        .await
        .body;
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown once only"
    );
    assert_eq!(listed[0]["has_secret"], true);
    // The test endpoint: the receiver answers 500 first, then 200.
    let r = api
        .post(
            "/api/v1/instances/default/notification-channels/hook/test",
            json!({}),
        )
        .await;
    assert_eq!(r.body["delivered"], false, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("500"));
    let r = api
        .post(
            "/api/v1/instances/default/notification-channels/hook/test",
            json!({}),
        )
        .await;
    assert_eq!(r.body["delivered"], true, "{}", r.body);
    assert_eq!(
        wait_event(&receiver, &secret, "test").await["data"]["channel"],
        "hook"
    );

    // A ten-day certificate: issued, and at once inside the 14-day reminder.
    api.patch(
        "/api/v1/instances/default",
        json!({"cert_validity_days": 10}),
    )
    .await;
    let d = api
        .expect(
            201,
            "/api/v1/instances/default/delegations",
            json!({"domain": "n.customer.test"}),
        )
        .await;
    let target = d["cname_target"].as_str().unwrap().to_string();
    authoritative(&t, "customer.test");
    t.dns.set_cname("_acme-challenge.n.customer.test", &target);
    api.expect(
        201,
        "/api/v1/instances/default/certificates",
        json!({"name": "short", "identifiers": ["n.customer.test"], "auto_renew": false}),
    )
    .await;
    let issued = wait_event(&receiver, &secret, "certificate.issued").await;
    assert_eq!(issued["data"]["name"], "short");
    assert_eq!(issued["data"]["identifiers"][0]["value"], "n.customer.test");
    let expiring = wait_event(&receiver, &secret, "certificate.expiring").await;
    assert_eq!(expiring["data"]["threshold_days"], 14, "{expiring}");
    assert_eq!(expiring["data"]["days_remaining"], 9);
    api.post(
        "/api/v1/instances/default/managed-certificates/short/renew",
        json!({}),
    )
    .await;
    let renewed = wait_event(&receiver, &secret, "certificate.renewed").await;
    assert_ne!(renewed["data"]["serial"], issued["data"]["serial"]);
    // Revoked from the inventory: the channel hears of it.
    let serial = renewed["data"]["certificate"].as_str().unwrap();
    api.post(
        &format!("/api/v1/instances/default/certificates/{serial}/revoke"),
        json!({}),
    )
    .await;
    wait_event(&receiver, &secret, "certificate.revoked").await;
    // The delegation CNAME disappears.
    t.dns
        .set_cname("_acme-challenge.n.customer.test", "elsewhere.test");
    api.post(
        "/api/v1/instances/default/delegations/n.customer.test/check",
        json!({}),
    )
    .await;
    let drift = wait_event(&receiver, &secret, "delegation.drift").await;
    assert_eq!(drift["data"]["domain"], "n.customer.test");
    assert_eq!(drift["data"]["status"], "mismatch");
    // The outbox shows what went out.
    let sent = api
        .get("/api/v1/instances/default/notifications")
        .await
        .body;
    assert!(
        sent.as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "sent"),
        "{sent}"
    );
    t.stop().await;
}

/// Moves the hub's clock and runs the managed-certificate sweep at once.
async fn advance(t: &TestHub, secs: i64) {
    t.hub.advance_clock(secs);
    acmehub::managed::sweep(&t.hub).await.unwrap();
}

async fn managed(api: &Api<'_>, instance: &str, name: &str) -> Value {
    api.get(&format!(
        "/api/v1/instances/{instance}/managed-certificates/{name}"
    ))
    .await
    .body
}

fn at(v: &Value) -> i64 {
    acmehub::util::parse_rfc3339(v.as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn with_the_clock_moved_on_it_renews_in_its_window_and_reminds_at_each_threshold() {
    let t = hub_with_zone(Db::Sqlite).await;
    let api = Api::admin(&t);
    let receiver = Receiver::start(Vec::new()).await;
    let channel = api
        .expect(
            201,
            "/api/v1/instances/default/notification-channels",
            json!({"name": "hook", "kind": "webhook", "url": receiver.url,
                   "events": ["certificate.renewed", "certificate.expiring"]}),
        )
        .await;
    let secret = channel["secret"].as_str().unwrap().to_string();
    authoritative(&t, "customer.test");
    for (name, domain, auto) in [
        ("w", "w.customer.test", true),
        ("r", "r.customer.test", false),
    ] {
        let d = api
            .expect(
                201,
                "/api/v1/instances/default/delegations",
                json!({"domain": domain}),
            )
            .await;
        t.dns.set_cname(
            &format!("_acme-challenge.{domain}"),
            d["cname_target"].as_str().unwrap(),
        );
        api.expect(
            201,
            "/api/v1/instances/default/certificates",
            json!({"name": name, "identifiers": [domain], "auto_renew": auto}),
        )
        .await;
        wait_for(
            &api,
            &format!("/api/v1/instances/default/managed-certificates/{name}"),
            |m| m["status"] == "active",
        )
        .await;
    }
    // Just before its renewal time nothing happens; just after, it renews.
    let w = managed(&api, "default", "w").await;
    let first = w["certificate"]["serial"].clone();
    let wait = at(&w["next_renewal_at"]) - acmehub::util::now();
    advance(&t, wait - 60).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        managed(&api, "default", "w").await["certificate"]["serial"],
        first
    );
    advance(&t, 120).await;
    let renewed = wait_for(
        &api,
        "/api/v1/instances/default/managed-certificates/w",
        |m| m["certificate"]["serial"] != first && m["status"] == "active",
    )
    .await;
    assert_eq!(
        wait_event(&receiver, &secret, "certificate.renewed").await["data"]["name"],
        "w"
    );
    assert_eq!(renewed["history"][1]["event"], "renewed");
    // Its certificates' lifetimes follow the real clock: stop managing it
    // before moving on further.
    api.delete("/api/v1/instances/default/managed-certificates/w")
        .await;

    // `r` does not renew: at 30, 14, 7 and 1 days before expiry, one reminder each.
    let r = managed(&api, "default", "r").await;
    let not_after = at(&r["certificate"]["not_after"]);
    let reminders = |receiver: &Receiver| -> Vec<i64> {
        receiver
            .events(&secret)
            .iter()
            .filter(|e| e["event"] == "certificate.expiring" && e["data"]["name"] == "r")
            .map(|e| e["data"]["threshold_days"].as_i64().unwrap())
            .collect()
    };
    let mut offset = wait + 60;
    for days in [30, 14, 7, 1] {
        // The hub's "now" is real time + offset; go to 2 minutes past the threshold.
        let target = not_after - days * 86400 + 120;
        let step = target - (acmehub::util::now() + offset);
        if step > 0 {
            advance(&t, step).await;
            offset += step;
        }
        let mut got = Vec::new();
        for _ in 0..50 {
            acmehub::managed::sweep(&t.hub).await.unwrap();
            got = reminders(&receiver);
            if got.last() == Some(&days) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(got.last(), Some(&days), "reminders so far: {got:?}");
    }
    assert_eq!(
        reminders(&receiver),
        [30, 14, 7, 1],
        "one reminder per threshold"
    );
    t.stop().await;
}

#[tokio::test]
async fn failures_back_off_doubling_and_say_so_after_three() {
    let t = hub_with_zone(Db::Sqlite).await;
    let api = Api::admin(&t);
    let receiver = Receiver::start(Vec::new()).await;
    // A relaying instance with no CA account: every attempt fails.
    api.expect(
        201,
        "/api/v1/instances",
        json!({"name": "relay", "issuer": "upstream"}),
    )
    .await;
    let channel = api
        .expect(
            201,
            "/api/v1/instances/relay/notification-channels",
            json!({"name": "hook", "kind": "webhook", "url": receiver.url}),
        )
        .await;
    let secret = channel["secret"].as_str().unwrap().to_string();
    let d = api
        .expect(
            201,
            "/api/v1/instances/relay/delegations",
            json!({"domain": "f.customer.test"}),
        )
        .await;
    authoritative(&t, "customer.test");
    t.dns.set_cname(
        "_acme-challenge.f.customer.test",
        d["cname_target"].as_str().unwrap(),
    );
    api.expect(
        201,
        "/api/v1/instances/relay/certificates",
        json!({"name": "f", "identifiers": ["f.customer.test"]}),
    )
    .await;
    let path = "/api/v1/instances/relay/managed-certificates/f";
    let mut offset = 0;
    for (failures, backoff) in [(1, 60), (2, 120), (3, 240), (4, 480)] {
        let m = wait_for(&api, path, |m| m["failures"] == failures).await;
        assert_eq!(m["status"], "failed", "{m}");
        assert!(
            m["error"]
                .as_str()
                .unwrap()
                .contains("There is no matching ACME account"),
            "{m}"
        );
        let expected = acmehub::util::now() + offset + backoff;
        let next = at(&m["next_attempt_at"]);
        assert!(
            (next - expected).abs() <= 3,
            "after {failures} failures: next {next}, expected {expected}"
        );
        // Not before its time.
        advance(&t, backoff - 30).await;
        offset += backoff - 30;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(managed(&api, "relay", "f").await["failures"], failures);
        advance(&t, 31).await;
        offset += 31;
    }
    let failing = wait_event(&receiver, &secret, "certificate.renewal_failing").await;
    assert_eq!(
        failing["data"]["failures"], 3,
        "said once, after three failures"
    );
    assert_eq!(
        receiver
            .events(&secret)
            .iter()
            .filter(|e| e["event"] == "certificate.renewal_failing")
            .count(),
        1
    );
    t.stop().await;
}
