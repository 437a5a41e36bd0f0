//! Upstream CA accounts, with a second in-process hub as the upstream CA:
//! saving, "Save and Test" (directory, registration with and without EAB),
//! and the failures an operator must be able to tell apart.

use acmehub::store::{CertificateIssuer, UpstreamOrderState};
use base64::Engine;
use serde_json::{Value, json};

use crate::admin::Api;
use crate::harness::*;

fn custom(name: &str, upstream: &TestHub, roots: Option<&str>) -> Value {
    json!({"name": name, "ca": "custom", "directory_url": upstream.directory,
           "trusted_roots_pem": roots, "email": "ops@example.test", "priority": 10})
}

fn root_pem(t: &TestHub) -> String {
    std::fs::read_to_string(&t.root_pem).unwrap()
}

#[tokio::test]
async fn save_and_test_registers_at_the_upstream_ca() {
    for db in databases() {
        let upstream = TestHub::start(Db::Sqlite).await;
        let t = TestHub::start(db).await;
        let api = Api::admin(&t);
        let roots = root_pem(&upstream);
        let created = api
            .expect(
                201,
                "/api/v1/instances/default/ca-accounts",
                custom("up-a", &upstream, Some(&roots)),
            )
            .await;
        assert_eq!(created["account_status"], "unregistered");
        assert_eq!(created["environment"], "production");
        let r = api
            .post("/api/v1/instances/default/ca-accounts/up-a/test", json!({}))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["available"], true, "{}", r.body);
        assert_eq!(r.body["detail"], "API is available");
        assert_eq!(r.body["account_status"], "valid");
        assert!(
            r.body["endpoints"]["newOrder"]
                .as_str()
                .unwrap()
                .ends_with("/acme/default/new-order")
        );
        assert!(r.body["latency_ms"].is_u64());
        let shown = api
            .get("/api/v1/instances/default/ca-accounts/up-a")
            .await
            .body;
        let url = shown["account_url"].as_str().unwrap();
        assert!(url.contains("/acme/default/account/"), "{shown}");
        // The upstream saw a new account.
        let events = Api::admin(&upstream)
            .get("/api/v1/events?action=account.create")
            .await
            .body;
        assert_eq!(events["items"].as_array().unwrap().len(), 1, "{events}");
        // Testing again keeps the same upstream account.
        api.post("/api/v1/instances/default/ca-accounts/up-a/test", json!({}))
            .await;
        let again = api
            .get("/api/v1/instances/default/ca-accounts/up-a")
            .await
            .body;
        assert_eq!(again["account_url"], url);

        // Without the upstream's root, TLS fails, and says so.
        api.expect(
            201,
            "/api/v1/instances/default/ca-accounts",
            custom("no-roots", &upstream, None),
        )
        .await;
        let r = api
            .post(
                "/api/v1/instances/default/ca-accounts/no-roots/test",
                json!({}),
            )
            .await;
        assert_eq!(r.body["available"], false);
        assert!(
            r.body["detail"].as_str().unwrap().contains("certificate"),
            "{}",
            r.body
        );
        // Nothing listening: the connection error.
        let port = free_port().await;
        let mut dead = custom("dead", &upstream, Some(&roots));
        dead["directory_url"] = json!(format!("https://localhost:{port}/directory"));
        api.expect(201, "/api/v1/instances/default/ca-accounts", dead)
            .await;
        let r = api
            .post("/api/v1/instances/default/ca-accounts/dead/test", json!({}))
            .await;
        assert_eq!(r.body["available"], false);
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("connect"),
            "{}",
            r.body
        );
        // Preferred first in the list.
        api.patch(
            "/api/v1/instances/default/ca-accounts/dead",
            json!({"preferred": true}),
        )
        .await;
        let list = api.get("/api/v1/instances/default/ca-accounts").await.body;
        assert_eq!(list[0]["name"], "dead");
        assert_eq!(
            list.as_array()
                .unwrap()
                .iter()
                .filter(|a| a["preferred"] == true)
                .count(),
            1
        );
        assert_eq!(
            api.delete("/api/v1/instances/default/ca-accounts/dead")
                .await
                .status,
            204
        );
        t.stop().await;
        upstream.stop().await;
    }
}

#[tokio::test]
async fn external_account_binding_is_used_and_a_wrong_key_is_reported() {
    let upstream = TestHub::start(Db::Sqlite).await;
    let up = Api::admin(&upstream);
    up.patch(
        "/api/v1/instances/default",
        json!({"external_account_required": true}),
    )
    .await;
    let key = up
        .expect(
            201,
            "/api/v1/instances/default/access-keys",
            json!({"name": "relay", "allowed_identifiers": ["*.customer.test"]}),
        )
        .await;
    let (kid, hmac) = (
        key["kid"].as_str().unwrap(),
        key["hmac_key"].as_str().unwrap(),
    );
    let t = TestHub::start(Db::Sqlite).await;
    let api = Api::admin(&t);
    let roots = root_pem(&upstream);
    let mut with_eab = custom("eab", &upstream, Some(&roots));
    with_eab["eab_kid"] = json!(kid);
    with_eab["eab_hmac_key"] = json!(hmac);
    let created = api
        .expect(201, "/api/v1/instances/default/ca-accounts", with_eab)
        .await;
    assert_eq!(created["eab_hmac_key_set"], true);
    let r = api
        .post("/api/v1/instances/default/ca-accounts/eab/test", json!({}))
        .await;
    assert_eq!(r.body["available"], true, "{}", r.body);

    let mut wrong = custom("wrong-eab", &upstream, Some(&roots));
    wrong["eab_kid"] = json!(kid);
    wrong["eab_hmac_key"] =
        json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]));
    api.expect(201, "/api/v1/instances/default/ca-accounts", wrong)
        .await;
    let r = api
        .post(
            "/api/v1/instances/default/ca-accounts/wrong-eab/test",
            json!({}),
        )
        .await;
    assert_eq!(r.body["available"], false, "{}", r.body);
    assert_eq!(r.body["account_status"], "error");
    assert!(
        r.body["detail"].as_str().unwrap().contains("unauthorized"),
        "{}",
        r.body
    );
    let no_eab = custom("no-eab", &upstream, Some(&roots));
    api.expect(201, "/api/v1/instances/default/ca-accounts", no_eab)
        .await;
    let r = api
        .post(
            "/api/v1/instances/default/ca-accounts/no-eab/test",
            json!({}),
        )
        .await;
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("externalAccountRequired"),
        "{}",
        r.body
    );

    // The HMAC key is write-only.
    let all = [
        api.get("/api/v1/instances/default/ca-accounts")
            .await
            .body
            .to_string(),
        api.get("/api/v1/events?limit=1000").await.body.to_string(),
    ]
    .join("");
    assert!(!all.contains(hmac));
    t.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn ca_account_fields_are_checked() {
    let t = TestHub::start(Db::Sqlite).await;
    let api = Api::admin(&t);
    for (body, field) in [
        (json!({"name": "x", "ca": "acme-corp"}), "ca"),
        (json!({"name": "x", "ca": "custom"}), "directory_url"),
        (
            json!({"name": "x", "ca": "custom", "directory_url": "http://ca.test/dir"}),
            "directory_url",
        ),
        (
            json!({"name": "x", "ca": "letsencrypt", "directory_url": "https://ca.test/dir"}),
            "directory_url",
        ),
        (json!({"name": "x", "ca": "zerossl"}), "eab_kid"),
        (
            json!({"name": "x", "ca": "letsencrypt-staging", "environment": "production"}),
            "environment",
        ),
        (
            json!({"name": "x", "ca": "letsencrypt", "dns_ttl": 0}),
            "dns_ttl",
        ),
        (
            json!({"name": "x", "ca": "letsencrypt", "api_timeout_s": 9999}),
            "api_timeout_s",
        ),
        (
            json!({"name": "x", "ca": "letsencrypt", "email": "not an address"}),
            "email",
        ),
        (
            json!({"name": "x", "ca": "letsencrypt", "eab_kid": "k"}),
            "eab_hmac_key",
        ),
        (
            json!({"name": "x", "ca": "letsencrypt", "trusted_roots_pem": "nope"}),
            "trusted_roots_pem",
        ),
        (
            json!({"name": "x", "ca": "letsencrypt", "caa_identities": ["not a name"]}),
            "caa_identities",
        ),
        (json!({"ca": "letsencrypt"}), "name"),
    ] {
        let r = api
            .post("/api/v1/instances/default/ca-accounts", body.clone())
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.body["field"], field, "{body}: {}", r.body);
    }
    let le = api
        .expect(
            201,
            "/api/v1/instances/default/ca-accounts",
            json!({"name": "le", "ca": "letsencrypt-staging"}),
        )
        .await;
    assert_eq!(le["environment"], "staging");
    assert_eq!(le["caa_identities"], json!(["letsencrypt.org"]));
    assert!(
        le["directory_url"]
            .as_str()
            .unwrap()
            .contains("acme-staging-v02")
    );
    assert_eq!(
        api.get("/api/v1/instances/default/ca-accounts")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Instances gain environment and failover.
    let r = api
        .patch("/api/v1/instances/default", json!({"environment": "qa"}))
        .await;
    assert_eq!(
        (r.status, r.body["field"].clone()),
        (400, json!("environment"))
    );
    let r = api
        .patch(
            "/api/v1/instances/default",
            json!({"environment": "staging", "failover": false}),
        )
        .await;
    assert_eq!(
        (r.body["environment"].clone(), r.body["failover"].clone()),
        (json!("staging"), json!(false))
    );
    t.stop().await;
}

#[tokio::test]
async fn an_upstream_instance_without_a_fitting_account_says_which_were_considered() {
    let t = TestHub::start(Db::Sqlite).await;
    let api = Api::admin(&t);
    api.expect(
        201,
        "/api/v1/instances",
        json!({"name": "relay", "issuer": "upstream"}),
    )
    .await;
    let directory = t.url("/acme/relay/directory");
    let (account, _) = t
        .builder()
        .create(
            &instant_acme::NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory,
            None,
        )
        .await
        .unwrap();
    let order = |name: &'static str| {
        let ids = vec![instant_acme::Identifier::Dns(name.to_string())];
        let account = &account;
        async move {
            match account.new_order(&instant_acme::NewOrder::new(&ids)).await {
                Err(instant_acme::Error::Api(p)) => p.detail.unwrap_or_default(),
                Err(other) => panic!("{other:?}"),
                Ok(_) => panic!("an order was accepted with no usable CA account"),
            }
        }
    };
    let detail = order("a.customer.test").await;
    assert!(
        detail.starts_with("There is no matching ACME account"),
        "{detail}"
    );
    assert!(detail.contains("none is configured"), "{detail}");
    api.expect(
        201,
        "/api/v1/instances/relay/ca-accounts",
        json!({"name": "le-staging", "ca": "letsencrypt-staging"}),
    )
    .await;
    api.expect(
        201,
        "/api/v1/instances/relay/ca-accounts",
        json!({"name": "no-wild", "ca": "custom", "directory_url": "https://ca.test/dir", "allow_wildcard": false}),
    )
    .await;
    let detail = order("*.customer.test").await;
    assert!(
        detail.starts_with("There is no matching ACME account"),
        "{detail}"
    );
    assert!(
        detail.contains("le-staging: a staging account cannot serve a production instance"),
        "{detail}"
    );
    assert!(
        detail.contains("no-wild: wildcards are not allowed"),
        "{detail}"
    );
    t.stop().await;
}

/// An upstream hub whose `default` instance pre-authorizes `*.customer.test`
/// for one access key; returns (kid, hmac) of that key.
async fn preauthorizing_upstream(upstream: &TestHub) -> (String, String) {
    let key = Api::admin(upstream)
        .expect(
            201,
            "/api/v1/instances/default/access-keys",
            json!({"name": "hub", "allowed_identifiers": ["*.customer.test"], "validation": "pre-authorized"}),
        )
        .await;
    (
        key["kid"].as_str().unwrap().into(),
        key["hmac_key"].as_str().unwrap().into(),
    )
}

/// A downstream `relay` instance with a pre-authorized key; returns an
/// account of a client there.
async fn relay_client(t: &TestHub) -> instant_acme::Account {
    let api = Api::admin(t);
    api.expect(
        201,
        "/api/v1/instances",
        json!({"name": "relay", "issuer": "upstream"}),
    )
    .await;
    let key = api
        .expect(
            201,
            "/api/v1/instances/relay/access-keys",
            json!({"name": "fleet", "allowed_identifiers": ["*.customer.test"], "validation": "pre-authorized"}),
        )
        .await;
    let hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key["hmac_key"].as_str().unwrap())
        .unwrap();
    let eab = instant_acme::ExternalAccountKey::new(key["kid"].as_str().unwrap().into(), &hmac);
    t.builder()
        .create(
            &instant_acme::NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            t.url("/acme/relay/directory"),
            Some(&eab),
        )
        .await
        .unwrap()
        .0
}

/// An upstream hub pre-authorizing `*.customer.test`, and a hub whose
/// `relay` instance has one CA account `up` there; returns both and a
/// client account of the relay instance.
async fn relay_to_one_upstream() -> (TestHub, TestHub, instant_acme::Account) {
    let upstream = TestHub::start(Db::Sqlite).await;
    let (kid, hmac) = preauthorizing_upstream(&upstream).await;
    let t = TestHub::start(Db::Sqlite).await;
    let client = relay_client(&t).await;
    Api::admin(&t)
        .expect(
            201,
            "/api/v1/instances/relay/ca-accounts",
            json!({"name": "up", "ca": "custom", "directory_url": upstream.directory,
                   "trusted_roots_pem": root_pem(&upstream), "eab_kid": kid, "eab_hmac_key": hmac}),
        )
        .await;
    (upstream, t, client)
}

fn retry() -> instant_acme::RetryPolicy {
    instant_acme::RetryPolicy::new()
        .initial_delay(std::time::Duration::from_millis(100))
        .backoff(1.5)
        .timeout(std::time::Duration::from_secs(30))
}

/// The chain's intermediate is signed by `root`.
fn chains_to(chain_pem: &str, root: &TestHub) -> bool {
    use x509_parser::prelude::*;
    let chain = pem_chain(chain_pem);
    let roots = pem_chain(&root_pem(root));
    let (_, inter) = X509Certificate::from_der(&chain[1]).unwrap();
    let (_, root) = X509Certificate::from_der(&roots[0]).unwrap();
    inter.verify_signature(Some(root.public_key())).is_ok()
}

#[tokio::test]
async fn a_relayed_order_is_issued_by_the_upstream_ca_and_fails_over() {
    for db in databases() {
        let upstream = TestHub::start(Db::Sqlite).await;
        let (kid, hmac) = preauthorizing_upstream(&upstream).await;
        let t = TestHub::start(db).await;
        let client = relay_client(&t).await;
        let api = Api::admin(&t);
        let roots = root_pem(&upstream);
        // The preferred account is down; the next one by priority serves.
        let port = free_port().await;
        api.expect(
            201,
            "/api/v1/instances/relay/ca-accounts",
            json!({"name": "down", "ca": "custom", "directory_url": format!("https://localhost:{port}/dir"),
                   "trusted_roots_pem": roots, "preferred": true, "api_timeout_s": 2}),
        )
        .await;
        api.expect(
            201,
            "/api/v1/instances/relay/ca-accounts",
            json!({"name": "up", "ca": "custom", "directory_url": upstream.directory, "trusted_roots_pem": roots,
                   "eab_kid": kid, "eab_hmac_key": hmac, "priority": 10}),
        )
        .await;
        let ids = vec![instant_acme::Identifier::Dns("a.customer.test".into())];
        let mut order = client
            .new_order(&instant_acme::NewOrder::new(&ids))
            .await
            .unwrap();
        assert_eq!(order.state().status, instant_acme::OrderStatus::Ready);
        order.finalize().await.unwrap();
        let chain = order.poll_certificate(&retry()).await.unwrap();
        assert!(
            chains_to(&chain, &upstream),
            "the certificate is not the upstream CA's"
        );
        assert!(!chains_to(&chain, &t), "the hub issued it locally");
        // Downstream ARI (RFC 9773) answers for the relayed certificate.
        let ari = acmehub::ca::ari_cert_id(&pem_chain(&chain)[0]).unwrap();
        let info: Value = t
            .http()
            .get(t.url(&format!("/acme/relay/renewal-info/{ari}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(info["suggestedWindow"]["start"].is_string(), "{info}");
        let certs = api.get("/api/v1/instances/relay/certificates").await.body;
        assert_eq!(certs["items"][0]["issuer"], "ca-account:up", "{certs}");
        assert_eq!(certs["items"][0]["status"], "active");
        let orders = api.get("/api/v1/instances/relay/orders").await.body;
        let upstream_state = &orders["items"][0]["upstream"];
        assert_eq!(upstream_state["ca_account"], "up", "{orders}");
        assert_eq!(upstream_state["state"], "valid");
        assert_eq!(
            upstream_state["attempts"][0]["account"], "down",
            "the failed attempt is on record"
        );
        // Names outside the downstream policy never reach upstream.
        let other = vec![instant_acme::Identifier::Dns("a.other.test".into())];
        assert!(
            client
                .new_order(&instant_acme::NewOrder::new(&other))
                .await
                .is_err()
        );
        t.stop().await;
        upstream.stop().await;
    }
}

#[tokio::test]
async fn a_relayed_order_interrupted_after_its_csr_went_upstream_resumes() {
    let (upstream, t, client) = relay_to_one_upstream().await;
    let ids = vec![instant_acme::Identifier::Dns("b.customer.test".into())];
    let order = client
        .new_order(&instant_acme::NewOrder::new(&ids))
        .await
        .unwrap();
    let order_id = order.url().rsplit('/').next().unwrap().to_string();
    // Wait for the upstream side to be ready (the job started at newOrder),
    // then hold the order's lease as a worker that is about to crash: the
    // real worker has let go, and cannot come back while the edits below
    // stand for what the crashed one left.
    let store = &t.hub.store;
    let now = acmehub::util::now;
    let mut held = false;
    for _ in 0..200 {
        let u = store.upstream_order(&order_id).await.unwrap().unwrap();
        if u.state == UpstreamOrderState::Ready
            && store
                .lease_upstream_order(&order_id, now(), now() + 900, "crashed")
                .await
                .unwrap()
        {
            held = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(held, "the relay worker never let go of a ready order");
    // A crash right after the CSR was recorded: the order is processing, the
    // job that would have sent it upstream never ran.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["b.customer.test".to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).unwrap();
    store
        .begin_relayed_issuance(&order_id, csr.der())
        .await
        .unwrap();
    let mut u = store.upstream_order(&order_id).await.unwrap().unwrap();
    u.state = UpstreamOrderState::Finalizing;
    store.update_upstream_order(&u).await.unwrap();
    store
        .release_upstream_order(&order_id, "crashed")
        .await
        .unwrap();
    // What a restart does.
    acmehub::orders::resume(&t.hub).await.unwrap();
    let mut done = None;
    for _ in 0..200 {
        let o = store
            .order(&u.instance_id, &order_id)
            .await
            .unwrap()
            .unwrap();
        if o.status == acmehub::store::OrderStatus::Valid {
            done = Some(o);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let state = store.upstream_order(&order_id).await.unwrap().unwrap();
    let done = done.unwrap_or_else(|| panic!("the resumed order did not complete: {state:?}"));
    let cert = store
        .certificate(&u.instance_id, done.certificate_id.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(chains_to(cert.chain_pem.as_deref().unwrap(), &upstream));
    assert_eq!(cert.issuer, CertificateIssuer::CaAccount("up".into()));
    // The upstream's alternate chain (its chain with its root) came along,
    // and is served downstream as the relayed certificate's only alternate.
    assert_eq!(
        cert.alternate_chains.len(),
        1,
        "{:?}",
        cert.alternate_chains
    );
    let alternate = pem_chain(&cert.alternate_chains[0]);
    assert_eq!(alternate.last(), pem_chain(&root_pem(&upstream)).first());
    assert!(!cert.alternate_chains[0].contains(&root_pem(&t)));
    t.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn concurrent_first_orders_register_the_ca_account_once() {
    // No Save and Test first: the account is registered on first use, by
    // whichever of the concurrent orders gets there.
    let (upstream, t, client) = relay_to_one_upstream().await;
    let names: Vec<String> = (0..6).map(|i| format!("c{i}.customer.test")).collect();
    let orders =
        futures::future::join_all(names.iter().map(|n| order_and_finalize(&client, n))).await;
    let chains = futures::future::join_all(
        orders
            .into_iter()
            .map(|mut order| async move { order.poll_certificate(&retry()).await }),
    )
    .await;
    for chain in chains {
        let chain = chain.expect("every concurrent order is issued");
        assert!(chains_to(&chain, &upstream));
    }
    let created = Api::admin(&upstream)
        .get("/api/v1/events?action=account.create")
        .await
        .body;
    let items = created["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "one upstream account: {created}");
    t.stop().await;
    upstream.stop().await;
}

/// A downstream order of the relay instance for `name`, finalized with a
/// fresh key; returns the order once the client has sent its CSR.
async fn order_and_finalize(client: &instant_acme::Account, name: &str) -> instant_acme::Order {
    let ids = vec![instant_acme::Identifier::Dns(name.into())];
    let mut order = client
        .new_order(&instant_acme::NewOrder::new(&ids))
        .await
        .unwrap();
    assert_eq!(order.state().status, instant_acme::OrderStatus::Ready);
    order.finalize().await.unwrap();
    order
}

async fn upstream_view(api: &Api<'_>, order: &instant_acme::Order) -> Value {
    let id = order.url().rsplit('/').next().unwrap();
    api.get(&format!("/api/v1/instances/relay/orders/{id}"))
        .await
        .body["upstream"]
        .clone()
}

#[tokio::test]
async fn an_upstream_that_dies_before_finalize_fails_over_with_the_clients_csr() {
    let a = TestHub::start(Db::Sqlite).await;
    let b = TestHub::start(Db::Sqlite).await;
    let (kid_a, hmac_a) = preauthorizing_upstream(&a).await;
    let (kid_b, hmac_b) = preauthorizing_upstream(&b).await;
    let t = TestHub::start(Db::Sqlite).await;
    let client = relay_client(&t).await;
    let api = Api::admin(&t);
    api.expect(
        201,
        "/api/v1/instances/relay/ca-accounts",
        json!({"name": "a", "ca": "custom", "directory_url": a.directory, "trusted_roots_pem": root_pem(&a),
               "eab_kid": kid_a, "eab_hmac_key": hmac_a, "preferred": true, "api_timeout_s": 3}),
    )
    .await;
    api.expect(
        201,
        "/api/v1/instances/relay/ca-accounts",
        json!({"name": "b", "ca": "custom", "directory_url": b.directory, "trusted_roots_pem": root_pem(&b),
               "eab_kid": kid_b, "eab_hmac_key": hmac_b, "priority": 50}),
    )
    .await;
    // The upstream order at A gets ready; then A goes away before the CSR reaches it.
    let ids = vec![instant_acme::Identifier::Dns("d.customer.test".into())];
    let mut order = client
        .new_order(&instant_acme::NewOrder::new(&ids))
        .await
        .unwrap();
    let order_id = order.url().rsplit('/').next().unwrap().to_string();
    let mut state = UpstreamOrderState::New;
    for _ in 0..100 {
        state = t
            .hub
            .store
            .upstream_order(&order_id)
            .await
            .unwrap()
            .unwrap()
            .state;
        if state == UpstreamOrderState::Ready {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(state, UpstreamOrderState::Ready);
    a.stop().await;
    order.finalize().await.unwrap();
    let chain = order.poll_certificate(&retry()).await.unwrap();
    assert!(chains_to(&chain, &b), "not issued by the fallback CA");
    let u = upstream_view(&api, &order).await;
    assert_eq!(u["ca_account"], "b", "{u}");
    assert_eq!(u["attempts"][0]["account"], "a", "{u}");
    t.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn caa_passes_over_accounts_whose_ca_it_does_not_authorize() {
    let upstream = TestHub::start(Db::Sqlite).await;
    let (kid, hmac) = preauthorizing_upstream(&upstream).await;
    let t = TestHub::start(Db::Sqlite).await;
    let client = relay_client(&t).await;
    let api = Api::admin(&t);
    for (name, caa, preferred) in [("ca-a", "ca-a.test", true), ("ca-b", "ca-b.test", false)] {
        api.expect(
            201,
            "/api/v1/instances/relay/ca-accounts",
            json!({"name": name, "ca": "custom", "directory_url": upstream.directory,
                   "trusted_roots_pem": root_pem(&upstream), "eab_kid": kid, "eab_hmac_key": hmac,
                   "preferred": preferred, "caa_identities": [caa]}),
        )
        .await;
    }
    // The directory names the CAs the instance's certificates come from.
    let directory: Value = t
        .http()
        .get(t.url("/acme/relay/directory"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        directory["meta"]["caaIdentities"],
        json!(["ca-a.test", "ca-b.test"])
    );
    // CAA allows only B's CA: A is skipped, not tried, and the order's
    // record of attempts says so.
    t.dns.add_caa("customer.test", 0, "issue", "ca-b.test");
    let mut order = order_and_finalize(&client, "e.customer.test").await;
    order.poll_certificate(&retry()).await.unwrap();
    let u = upstream_view(&api, &order).await;
    assert_eq!(u["ca_account"], "ca-b", "{u}");
    let attempts = u["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{u}");
    assert_eq!(attempts[0]["account"], "ca-a");
    assert_eq!(attempts[0]["skipped"], "caa");
    assert!(
        attempts[0]["error"]
            .as_str()
            .unwrap()
            .contains("CAA records at customer.test"),
        "{u}"
    );
    // RFC 8657: a record that names A's CA for another account skips A.
    t.dns.add_caa(
        "bound.customer.test",
        0,
        "issue",
        "ca-a.test; accounturi=https://ca-a.test/acct/someone-else",
    );
    t.dns
        .add_caa("bound.customer.test", 0, "issue", "ca-b.test");
    let mut order = order_and_finalize(&client, "bound.customer.test").await;
    order.poll_certificate(&retry()).await.unwrap();
    let u = upstream_view(&api, &order).await;
    assert_eq!(u["ca_account"], "ca-b", "{u}");
    assert!(
        u["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("only for the account https://ca-a.test/acct/someone-else"),
        "{u}"
    );
    // And one that names A's CA for A's own account lets A serve.
    api.expect(
        200,
        "/api/v1/instances/relay/ca-accounts/ca-a/test",
        json!({}),
    )
    .await;
    let a = api
        .get("/api/v1/instances/relay/ca-accounts/ca-a")
        .await
        .body;
    let url = a["account_url"].as_str().expect("registered").to_string();
    t.dns.add_caa(
        "named.customer.test",
        0,
        "issue",
        &format!("ca-a.test; accounturi={url}"),
    );
    let mut order = order_and_finalize(&client, "named.customer.test").await;
    order.poll_certificate(&retry()).await.unwrap();
    let u = upstream_view(&api, &order).await;
    assert_eq!(u["ca_account"], "ca-a", "{u}");
    // CAA that allows neither: the client's `caa` error, a subproblem per
    // name with the record to add, and the accounts considered.
    t.dns
        .add_caa("other.customer.test", 0, "issue", "elsewhere.test");
    let ids = vec![
        instant_acme::Identifier::Dns("other.customer.test".into()),
        instant_acme::Identifier::Dns("e.customer.test".into()),
    ];
    let problem = match client.new_order(&instant_acme::NewOrder::new(&ids)).await {
        Err(instant_acme::Error::Api(p)) => p,
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("an order CAA forbids to every account was accepted"),
    };
    assert_eq!(
        problem.r#type.as_deref(),
        Some("urn:ietf:params:acme:error:caa"),
        "{problem:?}"
    );
    assert_eq!(problem.status, Some(403));
    let detail = problem.detail.clone().unwrap_or_default();
    assert!(
        detail.starts_with("There is no matching ACME account"),
        "{detail}"
    );
    assert!(
        detail.contains("ca-a: CAA records at") && detail.contains("ca-b: CAA records at"),
        "{detail}"
    );
    // Only the name CAA forbids to every account: e.customer.test is
    // ca-b's to issue for.
    assert_eq!(problem.subproblems.len(), 1, "{problem:?}");
    let only = &problem.subproblems[0];
    assert_eq!(
        only.identifier,
        Some(instant_acme::Identifier::Dns("other.customer.test".into()))
    );
    let why = only.detail.as_deref().unwrap_or_default();
    assert!(
        why.contains("ca-a: ")
            && why.contains("ca-b: ")
            && why.contains("add a CAA record such as `other.customer.test CAA 0 issue"),
        "{why}"
    );
    // An IP address cannot be relayed: the client's rejectedIdentifier.
    let ids = vec![instant_acme::Identifier::Ip("192.0.2.7".parse().unwrap())];
    match client.new_order(&instant_acme::NewOrder::new(&ids)).await {
        Err(instant_acme::Error::Api(p)) => {
            assert_eq!(
                p.r#type.as_deref(),
                Some("urn:ietf:params:acme:error:rejectedIdentifier"),
                "{p:?}"
            );
            assert!(p.detail.unwrap_or_default().contains("192.0.2.7"));
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("an IP address was accepted for relaying"),
    }
    t.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn downstream_renewal_info_for_a_relayed_certificate_is_the_upstream_cas() {
    let (upstream, t, client) = relay_to_one_upstream().await;
    let mut order = order_and_finalize(&client, "g.customer.test").await;
    let chain = order.poll_certificate(&retry()).await.unwrap();
    let ari = acmehub::ca::ari_cert_id(&pem_chain(&chain)[0]).unwrap();
    let window = |hub: &TestHub, instance: &'static str| {
        let url = hub.url(&format!("/acme/{instance}/renewal-info/{ari}"));
        let http = hub.http();
        async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let info: Value = r.json().await.unwrap();
            info["suggestedWindow"].clone()
        }
    };
    // The upstream CA revokes it: its window moves to now, and so does ours,
    // though the hub itself has not revoked anything (its own computation
    // would be the last third of the lifetime).
    let up = Api::admin(&upstream);
    let certs = up.get("/api/v1/instances/default/certificates").await.body;
    let id = certs["items"][0]["id"].as_str().unwrap();
    let r = up
        .post(
            &format!("/api/v1/instances/default/certificates/{id}/revoke"),
            json!({"reason": 1}),
        )
        .await;
    assert!(r.status < 300, "{}", r.body);
    let ours = window(&t, "relay").await;
    assert_eq!(ours, window(&upstream, "default").await);
    let start = time::OffsetDateTime::parse(
        ours["start"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(start < time::OffsetDateTime::now_utc(), "{ours}");
    // Until the CA's Retry-After the answer is the hub's to give: with the
    // upstream gone it is still the upstream's window, not a computed one.
    upstream.stop().await;
    assert_eq!(window(&t, "relay").await, ours);
    t.stop().await;
}

#[tokio::test]
async fn a_relayed_challenge_needs_the_clients_proof_and_the_upstream_authorization() {
    let upstream = TestHub::start(Db::Sqlite).await;
    let (kid, hmac) = preauthorizing_upstream(&upstream).await;
    let t = TestHub::start(Db::Sqlite).await;
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
               "trusted_roots_pem": root_pem(&upstream), "eab_kid": kid, "eab_hmac_key": hmac}),
    )
    .await;
    // Downstream, names are proven by the client (http-01); the upstream CA
    // pre-authorizes only *.customer.test for the hub.
    let key = api
        .expect(
            201,
            "/api/v1/instances/relay/access-keys",
            json!({"name": "prove", "allowed_identifiers": ["*.customer.test", "*.other.test"], "validation": "challenge"}),
        )
        .await;
    let hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key["hmac_key"].as_str().unwrap())
        .unwrap();
    let eab = instant_acme::ExternalAccountKey::new(key["kid"].as_str().unwrap().into(), &hmac);
    let (client, _) = t
        .builder()
        .create(
            &instant_acme::NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            t.url("/acme/relay/directory"),
            Some(&eab),
        )
        .await
        .unwrap();
    let responder = Http01Responder::start(t.http01_port).await;
    let prove = |name: &'static str| {
        let client = &client;
        let responder = &responder;
        let dns = &t.dns;
        async move {
            dns.set_a(name, &["127.0.0.1".parse().unwrap()]);
            let ids = vec![instant_acme::Identifier::Dns(name.into())];
            let mut order = client
                .new_order(&instant_acme::NewOrder::new(&ids))
                .await
                .unwrap();
            let mut authzs = order.authorizations();
            let mut authz = authzs.next().await.unwrap().unwrap();
            let mut challenge = authz
                .challenge(instant_acme::ChallengeType::Http01)
                .unwrap();
            responder.set(&challenge.token, challenge.key_authorization().as_str());
            // A refusal may already be in the answer (the validation ended
            // in time); the order says it either way.
            if let Err(e) = challenge.set_ready().await {
                let e = format!("{e:?}");
                assert!(e.contains("upstream CA"), "{e}");
            }
            let status = order.poll_ready(&retry()).await;
            (order, status.map_err(|e| format!("{e:?}")))
        }
    };
    // Both proofs: ready, and issued by the upstream CA.
    let (mut order, status) = prove("h.customer.test").await;
    assert_eq!(status, Ok(instant_acme::OrderStatus::Ready));
    order.finalize().await.unwrap();
    let chain = order.poll_certificate(&retry()).await.unwrap();
    assert!(chains_to(&chain, &upstream));
    // The client's proof holds but the upstream CA refuses the name: the
    // downstream challenge is invalid, and says why.
    let (mut order, status) = prove("h.other.test").await;
    // The order is invalid with the upstream CA's refusal.
    let refusal = status.unwrap_err();
    assert!(
        refusal.contains("rejectedIdentifier") && refusal.contains("CA account \\\"up\\\""),
        "{refusal}"
    );
    let mut error = None;
    for _ in 0..100 {
        let mut authzs = order.authorizations();
        let mut authz = authzs.next().await.unwrap().unwrap();
        let challenge = authz
            .challenge(instant_acme::ChallengeType::Http01)
            .unwrap();
        if challenge.status == instant_acme::ChallengeStatus::Invalid {
            error = Some(format!("{:?}", challenge.error));
            break;
        }
        assert_ne!(challenge.status, instant_acme::ChallengeStatus::Valid);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let error = error.expect("the challenge did not become invalid");
    assert!(error.contains("upstream CA"), "{error}");
    t.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn a_downstream_profile_goes_to_an_upstream_ca_that_offers_it() {
    let offering = TestHub::start_with(Db::Sqlite, |c| {
        c.ca.profiles.insert(
            "shortlived".into(),
            acmehub::config::CaProfile {
                description: "Seven days".into(),
                leaf_validity_days: 7,
            },
        );
    })
    .await;
    let plain = TestHub::start(Db::Sqlite).await;
    let (kid_o, hmac_o) = preauthorizing_upstream(&offering).await;
    let (kid_p, hmac_p) = preauthorizing_upstream(&plain).await;
    let t = TestHub::start(Db::Sqlite).await;
    let client = relay_client(&t).await;
    let api = Api::admin(&t);
    // The preferred account's CA offers no profiles.
    api.expect(
        201,
        "/api/v1/instances/relay/ca-accounts",
        json!({"name": "plain", "ca": "custom", "directory_url": plain.directory, "trusted_roots_pem": root_pem(&plain),
               "eab_kid": kid_p, "eab_hmac_key": hmac_p, "preferred": true}),
    )
    .await;
    api.expect(
        201,
        "/api/v1/instances/relay/ca-accounts",
        json!({"name": "offering", "ca": "custom", "directory_url": offering.directory, "trusted_roots_pem": root_pem(&offering),
               "eab_kid": kid_o, "eab_hmac_key": hmac_o}),
    )
    .await;
    for name in ["plain", "offering"] {
        let r = api
            .post(
                &format!("/api/v1/instances/relay/ca-accounts/{name}/test"),
                json!({}),
            )
            .await;
        assert_eq!(r.body["available"], true, "{}", r.body);
    }
    let shown = api
        .get("/api/v1/instances/relay/ca-accounts/offering")
        .await
        .body;
    assert_eq!(shown["profiles"], json!({"shortlived": "Seven days"}));
    // The relay instance's directory offers what its accounts offer.
    let directory: Value = t
        .http()
        .get(t.url("/acme/relay/directory"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        directory["meta"]["profiles"],
        json!({"shortlived": "Seven days"})
    );
    let ids = vec![instant_acme::Identifier::Dns("p.customer.test".into())];
    let mut order = client
        .new_order(&instant_acme::NewOrder::new(&ids).profile("shortlived"))
        .await
        .unwrap();
    order.finalize().await.unwrap();
    let chain = order.poll_certificate(&retry()).await.unwrap();
    assert!(
        chains_to(&chain, &offering),
        "not from the CA offering the profile"
    );
    let ders = pem_chain(&chain);
    let (_, leaf) = x509_parser::parse_x509_certificate(&ders[0]).unwrap();
    let days =
        (leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp()) / 86400;
    assert_eq!(days, 7, "the upstream profile's lifetime");
    let u = upstream_view(&api, &order).await;
    assert_eq!(u["ca_account"], "offering", "{u}");
    // A profile nobody offers is refused at newOrder, naming what is offered.
    let refused = |instance: &'static str, client: &instant_acme::Account| {
        let ids = ids.clone();
        let client = client.clone();
        async move {
            match client
                .new_order(&instant_acme::NewOrder::new(&ids).profile("forever"))
                .await
            {
                Err(instant_acme::Error::Api(p)) => {
                    (p.r#type.unwrap_or_default(), p.detail.unwrap_or_default())
                }
                Err(other) => panic!("{instance}: {other:?}"),
                Ok(_) => panic!("{instance}: an unknown profile was accepted"),
            }
        }
    };
    let (kind, detail) = refused("relay", &client).await;
    assert_eq!(kind, "urn:ietf:params:acme:error:invalidProfile");
    assert!(
        detail.contains("the profiles offered are shortlived"),
        "{detail}"
    );
    let local = t.account().await;
    let (kind, detail) = refused("default", &local).await;
    assert_eq!(kind, "urn:ietf:params:acme:error:invalidProfile");
    assert!(detail.contains("offers no profiles"), "{detail}");
    t.stop().await;
    offering.stop().await;
    plain.stop().await;
}

/// A CA that is broken in one way, on 127.0.0.1 with its own TLS root.
struct BrokenCa {
    url: String,
    root_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl BrokenCa {
    /// `answer`: Some(raw HTTP response) to send to every request; None to
    /// accept connections and never answer (a hang).
    async fn start(answer: Option<&'static str>) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let Some(answer) = answer else {
                    held.push(tcp);
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let mut buf = [0u8; 4096];
                        let _ = tls.read(&mut buf).await;
                        let _ = tls.write_all(answer.as_bytes()).await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        Self {
            url: format!("https://localhost:{port}/directory"),
            root_pem: ca.pem(),
            task,
        }
    }
}

impl Drop for BrokenCa {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn failover_passes_an_upstream_that_answers_500_and_one_that_hangs() {
    let upstream = TestHub::start(Db::Sqlite).await;
    let (kid, hmac) = preauthorizing_upstream(&upstream).await;
    let failing = BrokenCa::start(Some(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 4\r\nconnection: close\r\n\r\noops",
    ))
    .await;
    let hanging = BrokenCa::start(None).await;
    let t = TestHub::start(Db::Sqlite).await;
    let client = relay_client(&t).await;
    let api = Api::admin(&t);
    for (name, ca, priority) in [("failing", &failing, 1), ("hanging", &hanging, 2)] {
        api.expect(
            201,
            "/api/v1/instances/relay/ca-accounts",
            json!({"name": name, "ca": "custom", "directory_url": ca.url, "trusted_roots_pem": ca.root_pem,
                   "priority": priority, "api_timeout_s": 1}),
        )
        .await;
    }
    api.expect(
        201,
        "/api/v1/instances/relay/ca-accounts",
        json!({"name": "up", "ca": "custom", "directory_url": upstream.directory, "trusted_roots_pem": root_pem(&upstream),
               "eab_kid": kid, "eab_hmac_key": hmac, "priority": 3}),
    )
    .await;
    // Long enough for two accounts' retries (1 s, 2 s each) to pass.
    let through_retries = instant_acme::RetryPolicy::new()
        .initial_delay(std::time::Duration::from_millis(200))
        .timeout(std::time::Duration::from_secs(60));
    let mut order = order_and_finalize(&client, "q.customer.test").await;
    let chain = order.poll_certificate(&through_retries).await.unwrap();
    assert!(chains_to(&chain, &upstream));
    let u = upstream_view(&api, &order).await;
    assert_eq!(u["ca_account"], "up", "{u}");
    let attempts = u["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{u}");
    assert_eq!(attempts[0]["account"], "failing");
    assert!(
        attempts[0]["error"].as_str().unwrap().contains("HTTP 500"),
        "{u}"
    );
    assert_eq!(attempts[1]["account"], "hanging");
    assert!(
        attempts[1]["error"].as_str().unwrap().contains("timed out"),
        "{u}"
    );
    // With failover off, the first failure (after its retries) is the order's end.
    api.patch("/api/v1/instances/relay", json!({"failover": false}))
        .await;
    let mut order = order_and_finalize(&client, "r.customer.test").await;
    let err = order.poll_certificate(&through_retries).await.unwrap_err();
    assert!(format!("{err:?}").contains("HTTP 500"), "{err:?}");
    t.stop().await;
    upstream.stop().await;
}
