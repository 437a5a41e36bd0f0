//! The admin API end to end: tokens and their scopes, instances, access keys
//! with EAB policies driving real ACME clients, the inventory, the audit log,
//! rate limits and the OpenAPI document.

use base64::Engine;
use instant_acme::{
    ChallengeType, ExternalAccountKey, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use serde_json::{Value, json};

use crate::harness::*;
use x509_parser::prelude::FromDer;

/// An admin API client with one token.
pub struct Api<'a> {
    t: &'a TestHub,
    http: reqwest::Client,
    token: Option<String>,
}

pub struct ApiReply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl<'a> Api<'a> {
    pub fn new(t: &'a TestHub, token: Option<&str>) -> Self {
        Self {
            t,
            http: t.http(),
            token: token.map(str::to_string),
        }
    }

    pub fn admin(t: &'a TestHub) -> Self {
        Self::new(t, Some(&t.admin_token()))
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> ApiReply {
        let mut request = self.http.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            self.t.url(path),
        );
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        ApiReply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    pub async fn get(&self, path: &str) -> ApiReply {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> ApiReply {
        self.call("POST", path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> ApiReply {
        self.call("PATCH", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> ApiReply {
        self.call("DELETE", path, None).await
    }

    /// POST that must answer `status`; returns the body.
    pub async fn expect(&self, status: u16, path: &str, body: Value) -> Value {
        let r = self.post(path, body).await;
        assert_eq!(r.status, status, "POST {path}: {}", r.body);
        r.body
    }
}

fn retry() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(std::time::Duration::from_millis(50))
        .backoff(1.5)
}

/// A new instance and an access key in it; returns (directory, kid, hmac key bytes).
pub(crate) async fn instance_with_key(
    api: &Api<'_>,
    instance: Value,
    key: Value,
) -> (String, String, Vec<u8>) {
    let name = instance["name"].as_str().unwrap().to_string();
    let created = api.expect(201, "/api/v1/instances", instance).await;
    let key = api
        .expect(201, &format!("/api/v1/instances/{name}/access-keys"), key)
        .await;
    let hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key["hmac_key"].as_str().unwrap())
        .unwrap();
    (
        created["directory_url"].as_str().unwrap().to_string(),
        key["kid"].as_str().unwrap().to_string(),
        hmac,
    )
}

pub(crate) async fn eab_account(
    t: &TestHub,
    directory: &str,
    eab: Option<&ExternalAccountKey>,
) -> Result<instant_acme::Account, instant_acme::Error> {
    t.builder()
        .create(
            &NewAccount {
                contact: &["mailto:ops@example.test"],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_string(),
            eab,
        )
        .await
        .map(|(account, _)| account)
}

pub(crate) fn problem<T>(result: Result<T, instant_acme::Error>) -> instant_acme::Problem {
    match result {
        Err(instant_acme::Error::Api(p)) => p,
        Err(other) => panic!("expected an ACME problem, got {other:?}"),
        Ok(_) => panic!("expected an ACME problem, got success"),
    }
}

pub(crate) fn dns(names: &[&str]) -> Vec<Identifier> {
    names
        .iter()
        .map(|n| Identifier::Dns(n.to_string()))
        .collect()
}

/// Finalizes a ready order with a fresh key and returns the PEM chain.
pub(crate) async fn finalize(order: &mut instant_acme::Order) -> String {
    order.finalize().await.unwrap();
    order.poll_certificate(&retry()).await.unwrap()
}

#[tokio::test]
async fn failed_authentication_says_nothing() {
    let t = TestHub::start(Db::Sqlite).await;
    for token in [None, Some("wrong-token-of-enough-length"), Some("")] {
        let r = Api::new(&t, token).get("/api/v1/instances").await;
        assert_eq!(r.status, 401);
        assert_eq!(r.body, json!({"error": "unauthorized"}));
        assert!(r.headers.contains_key("www-authenticate"));
    }
    let r = Api::admin(&t).get("/api/v1/instances").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body[0]["name"], "default");
    t.stop().await;
}

#[tokio::test]
async fn instances_are_validated_created_changed_and_deleted() {
    for db in databases() {
        let t = TestHub::start(db).await;
        let api = Api::admin(&t);
        let created = api
            .expect(
                201,
                "/api/v1/instances",
                json!({"name": "team-a", "description": "Team A",
                       "external_account_required": true, "cert_validity_days": 30,
                       "allowed_challenges": ["dns-01", "http-01"]}),
            )
            .await;
        assert_eq!(created["issuer"], "local");
        assert_eq!(created["effective_cert_validity_days"], 30);
        assert_eq!(created["allowed_challenges"], json!(["dns-01", "http-01"]));
        assert!(
            created["directory_url"]
                .as_str()
                .unwrap()
                .ends_with("/acme/team-a/directory")
        );
        // The new instance's directory works and says EAB is required.
        let dir: Value = t
            .http()
            .get(t.url("/acme/team-a/directory"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(dir["meta"]["externalAccountRequired"], true);
        assert!(
            dir["newAccount"]
                .as_str()
                .unwrap()
                .contains("/acme/team-a/")
        );

        // Each bad field is named, and nothing is created.
        for (body, field) in [
            (json!({"name": "Team_A"}), "name"),
            (json!({"name": "-a"}), "name"),
            (json!({}), "name"),
            (json!({"name": "b", "issuer": "elsewhere"}), "issuer"),
            (
                json!({"name": "b", "cert_validity_days": 0}),
                "cert_validity_days",
            ),
            (
                json!({"name": "b", "cert_validity_days": 400}),
                "cert_validity_days",
            ),
            (
                json!({"name": "b", "allowed_challenges": []}),
                "allowed_challenges",
            ),
            (
                json!({"name": "b", "allowed_challenges": ["smtp-01"]}),
                "allowed_challenges",
            ),
            (json!({"name": "b", "color": "red"}), "color"),
            (
                json!({"name": "b", "external_account_required": "yes"}),
                "external_account_required",
            ),
            (
                json!({"name": "b", "rate_limits": {"orders_per_hour": -1}}),
                "rate_limits.orders_per_hour",
            ),
        ] {
            let r = api.post("/api/v1/instances", body.clone()).await;
            assert_eq!(r.status, 400, "{body}: {}", r.body);
            assert_eq!(r.body["field"], field, "{body}: {}", r.body);
            assert!(!r.body["error"].as_str().unwrap().is_empty());
        }
        assert_eq!(api.get("/api/v1/instances/b").await.status, 404);
        let r = api
            .post("/api/v1/instances", json!({"name": "team-a"}))
            .await;
        assert_eq!(r.status, 409, "{}", r.body);
        let r = t
            .http()
            .post(t.url("/api/v1/instances"))
            .bearer_auth(t.admin_token())
            .header("content-type", "text/plain")
            .body("name=x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);

        // By id or by name.
        let id = created["id"].as_str().unwrap();
        assert_eq!(
            api.get(&format!("/api/v1/instances/{id}")).await.body["name"],
            "team-a"
        );
        let patched = api
            .patch(
                "/api/v1/instances/team-a",
                json!({"description": "Team A, prod", "cert_validity_days": null}),
            )
            .await;
        assert_eq!(patched.status, 200, "{}", patched.body);
        assert_eq!(patched.body["description"], "Team A, prod");
        assert_eq!(patched.body["cert_validity_days"], Value::Null);
        assert_eq!(patched.body["effective_cert_validity_days"], 90);
        assert_eq!(patched.body["external_account_required"], true);
        let renamed = api
            .patch("/api/v1/instances/team-a", json!({"name": "team-b"}))
            .await;
        assert_eq!(
            (renamed.status, renamed.body["field"].clone()),
            (400, json!("name"))
        );
        assert_eq!(api.get("/api/v1/instances/nope").await.status, 404);

        // An instance holding an access key is not deleted; an empty one is.
        api.expect(
            201,
            "/api/v1/instances/team-a/access-keys",
            json!({"name": "k", "allowed_identifiers": ["a.example.com"]}),
        )
        .await;
        let r = api.delete("/api/v1/instances/team-a").await;
        assert_eq!(r.status, 409, "{}", r.body);
        assert!(r.body["error"].as_str().unwrap().contains("1 access keys"));
        api.expect(201, "/api/v1/instances", json!({"name": "scratch"}))
            .await;
        api.expect(
            201,
            "/api/v1/instances/scratch/access-keys",
            json!({"name": "gone", "allowed_identifiers": ["a.example.com"]}),
        )
        .await;
        assert_eq!(
            api.delete("/api/v1/instances/scratch/access-keys/gone")
                .await
                .status,
            200
        );
        // Only revoked keys left: the instance can go.
        assert_eq!(api.delete("/api/v1/instances/scratch").await.status, 204);
        assert_eq!(api.get("/api/v1/instances/scratch").await.status, 404);
        let dir = t
            .http()
            .get(t.url("/acme/scratch/directory"))
            .send()
            .await
            .unwrap();
        assert_eq!(dir.status(), 404);
        t.stop().await;
    }
}

#[tokio::test]
async fn tokens_are_scoped_and_read_only_tokens_cannot_write() {
    for db in databases() {
        let t = TestHub::start(db).await;
        let admin = Api::admin(&t);
        admin
            .expect(201, "/api/v1/instances", json!({"name": "alpha"}))
            .await;
        admin
            .expect(201, "/api/v1/instances", json!({"name": "beta"}))
            .await;
        let reader = admin
            .expect(
                201,
                "/api/v1/tokens",
                json!({"name": "alpha-ro", "scope": "instance:alpha", "role": "read"}),
            )
            .await;
        assert_eq!(reader["scope"], "instance:alpha");
        let secret = reader["token"].as_str().unwrap();
        let writer = admin
            .expect(
                201,
                "/api/v1/tokens",
                json!({"name": "alpha-rw", "scope": "instance:alpha", "role": "write"}),
            )
            .await;
        for (body, field) in [
            (
                json!({"name": "x", "scope": "instance:nope", "role": "read"}),
                "scope",
            ),
            (
                json!({"name": "x", "scope": "root", "role": "read"}),
                "scope",
            ),
            (
                json!({"name": "x", "scope": "admin", "role": "owner"}),
                "role",
            ),
            (
                json!({"name": "bad name", "scope": "admin", "role": "read"}),
                "name",
            ),
            (json!({"name": "x", "scope": "admin"}), "role"),
        ] {
            let r = admin.post("/api/v1/tokens", body.clone()).await;
            assert_eq!(r.status, 400, "{body}: {}", r.body);
            assert_eq!(r.body["field"], field, "{body}");
        }
        let r = admin
            .post(
                "/api/v1/tokens",
                json!({"name": "alpha-ro", "scope": "admin", "role": "read"}),
            )
            .await;
        assert_eq!(r.status, 409);
        // The list shows no secrets.
        let list = admin.get("/api/v1/tokens").await.body.to_string();
        assert!(list.contains("alpha-ro") && !list.contains(secret));

        let ro = Api::new(&t, Some(secret));
        let seen = ro.get("/api/v1/instances").await.body;
        assert_eq!(seen.as_array().unwrap().len(), 1);
        assert_eq!(seen[0]["name"], "alpha");
        assert_eq!(ro.get("/api/v1/instances/alpha").await.status, 200);
        // Other instances do not exist for it: 404, not 403.
        assert_eq!(ro.get("/api/v1/instances/beta").await.status, 404);
        assert_eq!(
            ro.get("/api/v1/instances/default/certificates")
                .await
                .status,
            404
        );
        let write = ro
            .post(
                "/api/v1/instances/alpha/access-keys",
                json!({"name": "k", "allowed_identifiers": ["a.example.com"]}),
            )
            .await;
        assert_eq!(write.status, 403, "{}", write.body);
        assert_eq!(ro.get("/api/v1/tokens").await.status, 403);

        let rw = Api::new(&t, writer["token"].as_str());
        // Issuing without proof from the shared CA is for admin tokens only.
        let r = rw
            .post(
                "/api/v1/instances/alpha/access-keys",
                json!({"name": "wide", "allowed_identifiers": ["0.0.0.0/0"], "validation": "pre-authorized"}),
            )
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
        rw.expect(
            201,
            "/api/v1/instances/alpha/access-keys",
            json!({"name": "k", "allowed_identifiers": ["a.example.com"]}),
        )
        .await;
        let r = rw
            .post(
                "/api/v1/instances/beta/access-keys",
                json!({"name": "k", "allowed_identifiers": ["a.example.com"]}),
            )
            .await;
        assert_eq!(r.status, 404);
        assert_eq!(
            rw.post("/api/v1/instances", json!({"name": "gamma"}))
                .await
                .status,
            403
        );
        assert_eq!(rw.delete("/api/v1/instances/alpha").await.status, 403);
        // Its events are its instance's only.
        let events = rw.get("/api/v1/events").await.body;
        assert!(
            events["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["instance"] == "alpha"),
            "{events}"
        );
        assert_eq!(rw.get("/api/v1/events?instance=beta").await.status, 404);

        // Revoked, the token is refused like any unknown one.
        assert_eq!(admin.delete("/api/v1/tokens/alpha-ro").await.status, 204);
        assert_eq!(admin.delete("/api/v1/tokens/alpha-ro").await.status, 409);
        assert_eq!(ro.get("/api/v1/instances").await.status, 401);
        t.stop().await;
    }
}

#[tokio::test]
async fn pre_authorized_access_key_issues_without_challenges_and_enforces_its_policy() {
    for db in databases() {
        let t = TestHub::start(db).await;
        let api = Api::admin(&t);
        let (directory, kid, hmac) = instance_with_key(
            &api,
            json!({"name": "corp", "external_account_required": true, "cert_validity_days": 30}),
            json!({"name": "fleet", "allowed_identifiers": ["*.corp.test"],
                   "allow_wildcard": true, "validation": "pre-authorized"}),
        )
        .await;

        // Without EAB the instance refuses; with a wrong MAC or kid too.
        let p = problem(eab_account(&t, &directory, None).await);
        assert_eq!(
            p.r#type.as_deref(),
            Some("urn:ietf:params:acme:error:externalAccountRequired")
        );
        let wrong = ExternalAccountKey::new(kid.clone(), b"not the key at all, 32 bytes....");
        let p = problem(eab_account(&t, &directory, Some(&wrong)).await);
        assert_eq!(
            p.r#type.as_deref(),
            Some("urn:ietf:params:acme:error:unauthorized")
        );
        let unknown = ExternalAccountKey::new("kid-unknown".into(), &hmac);
        let p = problem(eab_account(&t, &directory, Some(&unknown)).await);
        assert!(p.detail.unwrap().contains("unknown"));

        let eab = ExternalAccountKey::new(kid.clone(), &hmac);
        let account = eab_account(&t, &directory, Some(&eab)).await.unwrap();
        // Ready at once: the policy vouches for the names.
        let mut order = account
            .new_order(&NewOrder::new(&dns(&["a.corp.test", "*.corp.test"])))
            .await
            .unwrap();
        assert_eq!(order.state().status, OrderStatus::Ready);
        let chain = finalize(&mut order).await;
        assert!(chain.contains("BEGIN CERTIFICATE"));
        // The instance's certificate lifetime applies.
        let certs = api.get("/api/v1/instances/corp/certificates").await.body;
        assert_eq!(certs["items"][0]["days_remaining"], 29, "{certs}");
        // Switched to challenge mode, the key's earlier pre-authorizations are not reused.
        let r = api
            .patch(
                "/api/v1/instances/corp/access-keys/fleet",
                json!({"validation": "challenge"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let mut order = account
            .new_order(&NewOrder::new(&dns(&["a.corp.test"])))
            .await
            .unwrap();
        assert_eq!(order.state().status, OrderStatus::Pending);
        api.patch(
            "/api/v1/instances/corp/access-keys/fleet",
            json!({"validation": "pre-authorized"}),
        )
        .await;

        // Outside the policy: one subproblem per refused name, naming the rule.
        let p = problem(
            account
                .new_order(&NewOrder::new(&dns(&[
                    "a.other.test",
                    "b.corp.test",
                    "corp.test",
                ])))
                .await,
        );
        assert_eq!(
            p.r#type.as_deref(),
            Some("urn:ietf:params:acme:error:rejectedIdentifier")
        );
        assert_eq!(p.subproblems.len(), 2, "{p:?}");
        let detail = &p.subproblems[0].detail;
        assert!(
            detail.as_deref().unwrap().contains("*.corp.test"),
            "{detail:?}"
        );

        // The account exists at `corp` only: its kid means nothing at `default`.
        let mut raw = crate::raw::Raw::new(&t);
        raw.kid = Some(account.id().to_string());
        let reply = raw
            .post(
                &t.url("/acme/default/new-order"),
                r#"{"identifiers":[{"type":"dns","value":"a.corp.test"}]}"#,
            )
            .await;
        assert_eq!(
            reply.problem_type(),
            "urn:ietf:params:acme:error:accountDoesNotExist"
        );

        // Revoking the access key stops its accounts.
        let r = api.delete("/api/v1/instances/corp/access-keys/fleet").await;
        assert_eq!(
            (r.status, r.body["status"].clone()),
            (200, json!("revoked"))
        );
        let p = problem(
            account
                .new_order(&NewOrder::new(&dns(&["c.corp.test"])))
                .await,
        );
        assert_eq!(
            p.r#type.as_deref(),
            Some("urn:ietf:params:acme:error:unauthorized")
        );
        assert!(p.detail.unwrap().contains("revoked"));
        let p = problem(eab_account(&t, &directory, Some(&eab)).await);
        assert!(p.detail.unwrap().contains("revoked"));
        let r = api
            .patch(
                "/api/v1/instances/corp/access-keys/fleet",
                json!({"status": "active"}),
            )
            .await;
        assert_eq!(r.status, 409, "revocation is final: {}", r.body);
        t.stop().await;
    }
}

#[tokio::test]
async fn challenge_access_key_still_needs_proof_and_disabling_it_stops_orders() {
    let t = TestHub::start(Db::Sqlite).await;
    let api = Api::admin(&t);
    let (directory, kid, hmac) = instance_with_key(
        &api,
        json!({"name": "web"}),
        json!({"name": "web-servers", "allowed_identifiers": ["*.web.test"], "validation": "challenge"}),
    )
    .await;
    let account = eab_account(&t, &directory, Some(&ExternalAccountKey::new(kid, &hmac)))
        .await
        .unwrap();
    let mut order = account
        .new_order(&NewOrder::new(&dns(&["www.web.test"])))
        .await
        .unwrap();
    assert_eq!(order.state().status, OrderStatus::Pending);
    let http = Http01Responder::start(t.http01_port).await;
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.unwrap();
        let mut challenge = authz.challenge(ChallengeType::Http01).unwrap();
        t.dns
            .set_a("www.web.test", &[std::net::Ipv4Addr::LOCALHOST.into()]);
        http.set(&challenge.token, challenge.key_authorization().as_str());
        challenge.set_ready().await.unwrap();
    }
    assert_eq!(
        order.poll_ready(&retry()).await.unwrap(),
        OrderStatus::Ready
    );
    finalize(&mut order).await;
    // A wildcard is refused when the key does not allow wildcards.
    let p = problem(
        account
            .new_order(&NewOrder::new(&dns(&["*.web.test"])))
            .await,
    );
    assert!(p.detail.unwrap().contains("does not allow wildcards"));

    let r = api
        .patch(
            "/api/v1/instances/web/access-keys/web-servers",
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["accounts"], 1);
    let p = problem(
        account
            .new_order(&NewOrder::new(&dns(&["www.web.test"])))
            .await,
    );
    assert!(p.detail.unwrap().contains("disabled"));
    // Key fields are checked like any other.
    for (body, field) in [
        (json!({"allowed_identifiers": []}), "allowed_identifiers"),
        (
            json!({"allowed_identifiers": ["10.0.0.1/8"]}),
            "allowed_identifiers",
        ),
        (json!({"validation": "trust-me"}), "validation"),
        (json!({"expires_at": "yesterday"}), "expires_at"),
        (json!({"expires_at": "2001-01-01T00:00:00Z"}), "expires_at"),
        (json!({"status": "gone"}), "status"),
    ] {
        let r = api
            .patch(
                "/api/v1/instances/web/access-keys/web-servers",
                body.clone(),
            )
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.body["field"], field, "{body}");
    }
    let r = api
        .post(
            "/api/v1/instances/web/access-keys",
            json!({"name": "no-patterns"}),
        )
        .await;
    assert_eq!(r.body["field"], "allowed_identifiers");
    // The HMAC key is shown once: never in listings.
    let keys = api.get("/api/v1/instances/web/access-keys").await.body;
    assert!(keys[0].get("hmac_key").is_none());
    assert_eq!(keys[0]["status"], "disabled");
    t.stop().await;
}

/// How many certificates of instance `inv` a listing query returns.
async fn count(api: &Api<'_>, query: &str) -> usize {
    api.get(&format!("/api/v1/instances/inv/certificates?{query}"))
        .await
        .body["items"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn inventory_lists_filters_and_revokes_and_the_audit_log_records_it() {
    for db in databases() {
        let t = TestHub::start(db).await;
        let api = Api::admin(&t);
        let (directory, kid, hmac) = instance_with_key(
            &api,
            json!({"name": "inv"}),
            json!({"name": "all", "allowed_identifiers": ["*.inv.test"], "validation": "pre-authorized"}),
        )
        .await;
        let account = eab_account(&t, &directory, Some(&ExternalAccountKey::new(kid, &hmac)))
            .await
            .unwrap();
        for names in [&["a.inv.test"][..], &["b.inv.test", "c.b.inv.test"][..]] {
            let mut order = account
                .new_order(&NewOrder::new(&dns(names)))
                .await
                .unwrap();
            finalize(&mut order).await;
        }
        let list = api.get("/api/v1/instances/inv/certificates").await.body;
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{list}");
        assert_eq!(items[0]["status"], "active");
        assert_eq!(items[0]["days_remaining"], 89);
        assert_eq!(items[0]["issuer"], "local");
        assert_eq!(count(&api, "identifier=a.inv.test").await, 1);
        assert_eq!(count(&api, "identifier=b.inv.test").await, 1);
        assert_eq!(count(&api, "identifier=inv.test").await, 2);
        assert_eq!(count(&api, "identifier=nv.test").await, 0);
        assert_eq!(count(&api, "identifier=A.INV.TEST.").await, 1);
        assert_eq!(count(&api, "status=expired").await, 0);
        assert_eq!(count(&api, "expiring_within_days=30").await, 0);
        assert_eq!(count(&api, "expiring_within_days=90").await, 2);
        let page = api
            .get("/api/v1/instances/inv/certificates?limit=1")
            .await
            .body;
        assert_eq!(page["next_offset"], 1);
        for bad in [
            "status=old",
            "limit=0",
            "expiring_within_days=-1",
            "offset=-3",
        ] {
            let r = api
                .get(&format!("/api/v1/instances/inv/certificates?{bad}"))
                .await;
            assert_eq!(r.status, 400, "{bad}");
        }

        // Revoke through the API by serial; the CRL lists it.
        let serial = items[1]["serial"].as_str().unwrap().to_string();
        let path = format!("/api/v1/instances/inv/certificates/{serial}/revoke");
        let r = api.post(&path, json!({"reason": 7})).await;
        assert_eq!((r.status, r.body["field"].clone()), (400, json!("reason")));
        let r = api.post(&path, json!({"reason": 4})).await;
        assert_eq!(
            (r.status, r.body["status"].clone()),
            (200, json!("revoked")),
            "{}",
            r.body
        );
        // A bodiless POST means the default reason; this one is revoked already.
        let again = t
            .http()
            .post(t.url(&path))
            .bearer_auth(t.admin_token())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 409);
        assert_eq!(count(&api, "status=revoked").await, 1);
        let shown = api
            .get(&format!(
                "/api/v1/instances/inv/certificates/{}",
                items[1]["id"].as_str().unwrap()
            ))
            .await
            .body;
        assert!(
            shown["chain_pem"]
                .as_str()
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
        let crl = t
            .http()
            .get(t.url("/ca/crl"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let (_, crl) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&crl).unwrap();
        assert!(crl.iter_revoked_certificates().any(|r| {
            r.raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                == serial
        }));

        // Orders show their authorizations.
        let orders = api.get("/api/v1/instances/inv/orders").await.body;
        assert_eq!(orders["items"].as_array().unwrap().len(), 2);
        assert_eq!(orders["items"][0]["status"], "valid");
        assert_eq!(orders["items"][0]["authorizations"][0]["status"], "valid");

        // The audit log: who did what, and never a secret.
        let events = api.get("/api/v1/events?instance=inv").await.body;
        let actions: Vec<&str> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        for want in [
            "instance.create",
            "access-key.create",
            "account.create",
            "order.create",
            "certificate.issue",
            "certificate.revoke",
        ] {
            assert!(actions.contains(&want), "{want} missing from {actions:?}");
        }
        let revoke = &events["items"][0];
        assert_eq!(revoke["action"], "certificate.revoke");
        assert_eq!(revoke["actor"], "token:bootstrap");
        let all = api.get("/api/v1/events?limit=1000").await.body.to_string();
        let hmac_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hmac);
        assert!(
            !all.contains(&hmac_b64),
            "an HMAC key reached the audit log"
        );
        let first = api.get("/api/v1/events?limit=2").await.body;
        let before = first["next_before"].as_i64().unwrap();
        let next = api
            .get(&format!("/api/v1/events?limit=2&before={before}"))
            .await
            .body;
        assert!(next["items"][0]["seq"].as_i64().unwrap() < before);
        t.stop().await;
    }
}

#[tokio::test]
async fn rate_limits_answer_rate_limited_with_retry_after() {
    for db in databases() {
        let t = TestHub::start(db).await;
        let api = Api::admin(&t);
        let r = api
            .patch(
                "/api/v1/instances/default",
                json!({"rate_limits": {"orders_per_hour": 2}}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let account = t.account().await;
        for name in ["a.limit.test", "b.limit.test"] {
            account
                .new_order(&NewOrder::new(&dns(&[name])))
                .await
                .unwrap();
        }
        let mut raw = crate::raw::Raw::new(&t);
        raw.register().await;
        // Counted per client address too: a second account from the same host is limited.
        let reply = raw
            .post(
                &t.url("/acme/default/new-order"),
                r#"{"identifiers":[{"type":"dns","value":"c.limit.test"}]}"#,
            )
            .await;
        assert_eq!(reply.status, 429, "{}", reply.text);
        assert_eq!(
            reply.problem_type(),
            "urn:ietf:params:acme:error:rateLimited"
        );
        let wait: u64 = reply.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=3600).contains(&wait));
        assert!(
            reply.body["detail"]
                .as_str()
                .unwrap()
                .contains("new orders per hour")
        );
        t.stop().await;
    }
}

/// An External Account Binding over `raw`'s key (RFC 8555 §7.3.4), by hand.
fn binding(raw: &crate::raw::Raw<'_>, kid: &str, hmac: &[u8], url: &str) -> Value {
    let b64 = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
    let protected = b64(json!({"alg": "HS256", "kid": kid, "url": url})
        .to_string()
        .as_bytes());
    let payload = b64(raw.key.jwk().to_string().as_bytes());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, hmac);
    let tag = ring::hmac::sign(&key, format!("{protected}.{payload}").as_bytes());
    json!({"protected": protected, "payload": payload, "signature": b64(tag.as_ref())})
}

#[tokio::test]
async fn accounts_from_before_eab_was_required_must_bind_and_disallowed_challenges_fail() {
    let t = TestHub::start(Db::Sqlite).await;
    let api = Api::admin(&t);
    api.expect(201, "/api/v1/instances", json!({"name": "late"}))
        .await;
    let new_account = t.url("/acme/late/new-account");
    let new_order = t.url("/acme/late/new-order");
    let order_body =
        |name: &str| json!({"identifiers": [{"type": "dns", "value": name}]}).to_string();
    let mut raw = crate::raw::Raw::new(&t);
    let reply = raw
        .post(&new_account, r#"{"termsOfServiceAgreed":true}"#)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let kid = reply.headers["location"].to_str().unwrap().to_string();
    raw.kid = Some(kid.clone());
    let order = raw.post(&new_order, &order_body("www.late.test")).await;
    assert_eq!(order.status, 201, "{}", order.text);
    let authz = raw
        .post(order.body["authorizations"][0].as_str().unwrap(), "")
        .await;
    let http01 = authz.body["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "http-01")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    // Dropping a challenge type makes its pending challenges unanswerable.
    api.patch(
        "/api/v1/instances/late",
        json!({"allowed_challenges": ["dns-01"]}),
    )
    .await;
    let reply = raw.post(&http01, "{}").await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert!(reply.text.contains("no longer allows http-01"));

    // Once EAB is required, an unbound account can no longer order...
    api.patch(
        "/api/v1/instances/late",
        json!({"external_account_required": true}),
    )
    .await;
    let reply = raw.post(&new_order, &order_body("www.late.test")).await;
    assert_eq!(
        reply.problem_type(),
        "urn:ietf:params:acme:error:externalAccountRequired",
        "{}",
        reply.text
    );
    // ...until newAccount with a binding binds it (same key, same account).
    let created = api
        .expect(
            201,
            "/api/v1/instances/late/access-keys",
            json!({"name": "late-key", "allowed_identifiers": ["*.late.test"]}),
        )
        .await;
    let hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(created["hmac_key"].as_str().unwrap())
        .unwrap();
    raw.kid = None;
    let eab = binding(&raw, created["kid"].as_str().unwrap(), &hmac, &new_account);
    let payload = json!({"termsOfServiceAgreed": true, "externalAccountBinding": eab});
    let reply = raw.post(&new_account, &payload.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.headers["location"].to_str().unwrap(), kid);
    raw.kid = Some(kid);
    let reply = raw.post(&new_order, &order_body("www.late.test")).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let reply = raw.post(&new_order, &order_body("www.other.test")).await;
    assert_eq!(
        reply.problem_type(),
        "urn:ietf:params:acme:error:rejectedIdentifier"
    );
    let keys = api.get("/api/v1/instances/late/access-keys").await.body;
    assert_eq!(keys[0]["accounts"], 1);
    t.stop().await;
}

#[tokio::test]
async fn failed_validations_and_request_rates_are_limited() {
    let t = TestHub::start(Db::Sqlite).await;
    let api = Api::admin(&t);
    api.patch(
        "/api/v1/instances/default",
        json!({"rate_limits": {"failed_validations_per_hour": 1}}),
    )
    .await;
    let account = t.account().await;
    let mut order = account
        .new_order(&NewOrder::new(&dns(&["fail.limit.test"])))
        .await
        .unwrap();
    // Nothing answers on the http-01 port: the validation fails.
    t.dns
        .set_a("fail.limit.test", &[std::net::Ipv4Addr::LOCALHOST.into()]);
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.unwrap();
        // The failure may already be in the answer (the validation ended in time).
        if let Err(e) = authz
            .challenge(ChallengeType::Http01)
            .unwrap()
            .set_ready()
            .await
        {
            let e = format!("{e:?}");
            assert!(e.contains("urn:ietf:params:acme:error:connection"), "{e}");
        }
    }
    assert!(
        order.poll_ready(&retry()).await.is_err() || order.state().status == OrderStatus::Invalid
    );
    let p = problem(
        account
            .new_order(&NewOrder::new(&dns(&["next.limit.test"])))
            .await,
    );
    assert_eq!(
        p.r#type.as_deref(),
        Some("urn:ietf:params:acme:error:rateLimited")
    );
    assert!(p.detail.unwrap().contains("failed validations per hour"));

    api.patch(
        "/api/v1/instances/default",
        json!({"rate_limits": {"requests_per_second": 3}}),
    )
    .await;
    let raw = crate::raw::Raw::new(&t);
    let mut limited = None;
    // Within one second at most 3 signed requests from this address pass;
    // a handful more than that must meet a 429 (the window may roll over once).
    for _ in 0..10 {
        let reply = raw
            .post(
                &t.url("/acme/default/new-account"),
                r#"{"termsOfServiceAgreed":true}"#,
            )
            .await;
        if reply.status == 429 {
            limited = Some(reply);
            break;
        }
    }
    let reply = limited.expect("no request was rate limited");
    assert_eq!(
        reply.problem_type(),
        "urn:ietf:params:acme:error:rateLimited"
    );
    assert_eq!(reply.headers["retry-after"], "1");
    t.stop().await;
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let t = TestHub::start(Db::Sqlite).await;
    let doc: Value = t
        .http()
        .get(t.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let routes = [
        ("get", "/api/v1/instances"),
        ("post", "/api/v1/instances"),
        ("get", "/api/v1/instances/{i}"),
        ("patch", "/api/v1/instances/{i}"),
        ("delete", "/api/v1/instances/{i}"),
        ("get", "/api/v1/instances/{i}/access-keys"),
        ("post", "/api/v1/instances/{i}/access-keys"),
        ("get", "/api/v1/instances/{i}/access-keys/{id}"),
        ("patch", "/api/v1/instances/{i}/access-keys/{id}"),
        ("delete", "/api/v1/instances/{i}/access-keys/{id}"),
        ("get", "/api/v1/instances/{i}/orders"),
        ("get", "/api/v1/instances/{i}/orders/{id}"),
        ("get", "/api/v1/instances/{i}/certificates"),
        ("get", "/api/v1/instances/{i}/certificates/{id}"),
        ("post", "/api/v1/instances/{i}/certificates/{id}/revoke"),
        ("post", "/api/v1/instances/{i}/certificates"),
        ("get", "/api/v1/instances/{i}/certificates/{id}/download"),
        ("get", "/api/v1/instances/{i}/managed-certificates"),
        ("get", "/api/v1/instances/{i}/managed-certificates/{id}"),
        ("patch", "/api/v1/instances/{i}/managed-certificates/{id}"),
        ("delete", "/api/v1/instances/{i}/managed-certificates/{id}"),
        (
            "post",
            "/api/v1/instances/{i}/managed-certificates/{id}/renew",
        ),
        ("get", "/api/v1/instances/{i}/notification-channels"),
        ("post", "/api/v1/instances/{i}/notification-channels"),
        ("get", "/api/v1/instances/{i}/notification-channels/{id}"),
        ("delete", "/api/v1/instances/{i}/notification-channels/{id}"),
        (
            "post",
            "/api/v1/instances/{i}/notification-channels/{id}/test",
        ),
        ("get", "/api/v1/instances/{i}/notifications"),
        ("get", "/api/v1/events"),
        ("get", "/api/v1/tokens"),
        ("post", "/api/v1/tokens"),
        ("delete", "/api/v1/tokens/{id}"),
        ("get", "/api/v1/users"),
        ("post", "/api/v1/users"),
        ("delete", "/api/v1/users/{id}"),
        ("get", "/api/v1/credential-kinds"),
        ("get", "/api/v1/instances/{i}/credentials"),
        ("post", "/api/v1/instances/{i}/credentials"),
        ("get", "/api/v1/instances/{i}/credentials/{id}"),
        ("patch", "/api/v1/instances/{i}/credentials/{id}"),
        ("delete", "/api/v1/instances/{i}/credentials/{id}"),
        ("get", "/api/v1/instances/{i}/dns-zones"),
        ("post", "/api/v1/instances/{i}/dns-zones"),
        ("delete", "/api/v1/instances/{i}/dns-zones/{id}"),
        ("post", "/api/v1/instances/{i}/dns-zones/{id}/test"),
        ("get", "/api/v1/instances/{i}/delegations"),
        ("post", "/api/v1/instances/{i}/delegations"),
        ("get", "/api/v1/instances/{i}/delegations/{id}"),
        ("delete", "/api/v1/instances/{i}/delegations/{id}"),
        ("post", "/api/v1/instances/{i}/delegations/{id}/check"),
        ("get", "/api/v1/instances/{i}/ca-accounts"),
        ("post", "/api/v1/instances/{i}/ca-accounts"),
        ("get", "/api/v1/instances/{i}/ca-accounts/{id}"),
        ("patch", "/api/v1/instances/{i}/ca-accounts/{id}"),
        ("delete", "/api/v1/instances/{i}/ca-accounts/{id}"),
        ("post", "/api/v1/instances/{i}/ca-accounts/{id}/test"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        routes.len(),
        "undocumented or unexpected routes: {paths:?}"
    );
    for (method, path) in routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not in the OpenAPI document"
        );
        // And the route is served: an unauthenticated call is refused with 401, not 404.
        let concrete = path.replace("{i}", "default").replace("{id}", "x");
        let r = Api::new(&t, None)
            .call(&method.to_uppercase(), &concrete, None)
            .await;
        assert_eq!(r.status, 401, "{method} {concrete}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    t.stop().await;
}
