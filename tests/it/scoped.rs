//! What an instance-scoped write token may change: anything that narrows,
//! and nothing that widens what the hub issues without proof or what the
//! instance lets in. A widening change answers 403, names what needs a
//! hub-wide token, and changes nothing.

use serde_json::{Value, json};

use crate::admin::Api;
use crate::harness::*;

/// An instance `alpha` and a write token scoped to it.
async fn alpha_writer(admin: &Api<'_>) -> String {
    admin
        .expect(
            201,
            "/api/v1/instances",
            json!({"name": "alpha", "external_account_required": true,
                   "cert_validity_days": 30, "allowed_challenges": ["dns-01"],
                   "rate_limits": {"orders_per_hour": 10}}),
        )
        .await;
    let token = admin
        .expect(
            201,
            "/api/v1/tokens",
            json!({"name": "alpha-rw", "scope": "instance:alpha", "role": "write"}),
        )
        .await;
    token["token"].as_str().unwrap().to_string()
}

/// Asserts a 403 that says a hub-wide token is needed.
fn refused(r: &crate::admin::ApiReply, what: &str) {
    assert_eq!(r.status, 403, "{what}: {}", r.body);
    let text = r.body["error"].as_str().unwrap_or_default();
    assert!(text.contains("hub-wide token"), "{what}: {text}");
}

#[tokio::test]
async fn an_instance_token_cannot_widen_a_pre_authorized_access_key() {
    let t = TestHub::start(Db::Sqlite).await;
    let admin = Api::admin(&t);
    let writer = alpha_writer(&admin).await;
    let rw = Api::new(&t, Some(&writer));
    let key = "/api/v1/instances/alpha/access-keys/fleet";
    admin
        .expect(
            201,
            "/api/v1/instances/alpha/access-keys",
            json!({"name": "fleet", "allowed_identifiers": ["*.corp.example.test", "10.0.0.0/8"],
                   "validation": "pre-authorized", "expires_at": "2090-01-01T00:00:00Z"}),
        )
        .await;
    let r = admin.patch(key, json!({"status": "disabled"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let before: Value = admin.get(key).await.body;

    for (body, what) in [
        (json!({"status": "active"}), "re-enabling"),
        (
            json!({"status": "active", "expires_at": "2099-12-31T00:00:00Z"}),
            "re-enabling with a later expiry",
        ),
        (
            json!({"expires_at": "2099-12-31T00:00:00Z"}),
            "a later expiry",
        ),
        (json!({"expires_at": null}), "no expiry"),
        (
            json!({"allowed_identifiers": ["*.corp.example.test", "10.0.0.0/8", "other.example.test"]}),
            "another identifier",
        ),
        (
            json!({"allowed_identifiers": ["*.example.test"]}),
            "a wider subtree",
        ),
        (
            json!({"allowed_identifiers": ["*.corp.example.test", "10.0.0.0/7"]}),
            "a wider network",
        ),
        (json!({"allow_wildcard": true}), "wildcards"),
    ] {
        refused(&rw.patch(key, body).await, what);
        assert_eq!(admin.get(key).await.body, before, "{what} changed nothing");
    }
    let events = admin
        .get("/api/v1/events?action=access-key.enable")
        .await
        .body;
    assert_eq!(events["items"].as_array().unwrap().len(), 0, "{events}");

    // Narrowing stays open to the instance's own token, disabled or not.
    for body in [
        json!({"allowed_identifiers": ["a.corp.example.test", "10.1.0.0/16"]}),
        json!({"expires_at": "2080-01-01T00:00:00Z"}),
        json!({"allow_wildcard": false}),
        json!({"description": "narrowed"}),
    ] {
        let r = rw.patch(key, body.clone()).await;
        assert_eq!(r.status, 200, "{body}: {}", r.body);
    }
    // An admin re-enables it; the instance token may disable it again.
    assert_eq!(
        admin.patch(key, json!({"status": "active"})).await.status,
        200
    );
    assert_eq!(
        rw.patch(key, json!({"status": "disabled"})).await.status,
        200
    );
    assert_eq!(
        admin.patch(key, json!({"status": "active"})).await.status,
        200
    );
    // Out of pre-authorization, the key still may not gain what an admin
    // withheld: identifiers, a lifted expiry.
    let r = rw.patch(key, json!({"validation": "challenge"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    refused(
        &rw.patch(
            key,
            json!({"allowed_identifiers": ["*.example.test"], "expires_at": null}),
        )
        .await,
        "more identifiers",
    );
    // ...and back into pre-authorization is an admin's call.
    refused(
        &rw.patch(key, json!({"validation": "pre-authorized"})).await,
        "pre-authorized",
    );
    assert_eq!(admin.get(key).await.body["validation"], "challenge");
    // A challenge key the instance token made itself: it may create it and
    // narrow it, but reviving or widening it is an admin's call too (the
    // issue's rule: every widening needs a hub-wide token).
    rw.expect(
        201,
        "/api/v1/instances/alpha/access-keys",
        json!({"name": "own", "allowed_identifiers": ["a.example.test"]}),
    )
    .await;
    let own = "/api/v1/instances/alpha/access-keys/own";
    assert_eq!(
        rw.patch(own, json!({"status": "disabled"})).await.status,
        200
    );
    refused(
        &rw.patch(
            own,
            json!({"status": "active", "allowed_identifiers": ["*.example.test"]}),
        )
        .await,
        "re-enabling",
    );
    assert_eq!(admin.get(own).await.body["status"], "disabled");
    t.stop().await;
}

#[tokio::test]
async fn an_instance_token_cannot_widen_its_instance_settings() {
    let t = TestHub::start(Db::Sqlite).await;
    let admin = Api::admin(&t);
    let writer = alpha_writer(&admin).await;
    let rw = Api::new(&t, Some(&writer));
    let path = "/api/v1/instances/alpha";
    let before = admin.get(path).await.body;
    for (body, what) in [
        (
            json!({"external_account_required": false}),
            "turning off external account binding",
        ),
        (json!({"cert_validity_days": 90}), "a longer lifetime"),
        (
            json!({"cert_validity_days": null}),
            "the hub's longer default lifetime",
        ),
        (
            json!({"allowed_challenges": ["dns-01", "http-01"]}),
            "another challenge type",
        ),
        (
            json!({"rate_limits": {"orders_per_hour": 100}}),
            "a higher rate limit",
        ),
        (
            json!({"rate_limits": {"orders_per_hour": 0}}),
            "no rate limit",
        ),
    ] {
        refused(&rw.patch(path, body).await, what);
        assert_eq!(admin.get(path).await.body, before, "{what} changed nothing");
    }
    for body in [
        json!({"external_account_required": true, "description": "same settings, saved again"}),
        json!({"cert_validity_days": 7}),
        json!({"rate_limits": {"orders_per_hour": 5, "requests_per_second": 20}}),
        json!({"failover": false}),
    ] {
        let r = rw.patch(path, body.clone()).await;
        assert_eq!(r.status, 200, "{body}: {}", r.body);
    }
    // The admin token may still do all of it.
    let r = admin
        .patch(
            path,
            json!({"external_account_required": false, "cert_validity_days": null,
                   "rate_limits": {}, "allowed_challenges": ["http-01", "dns-01"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    t.stop().await;
}

/// The same class as finding 7 elsewhere: a CA directory ("Save and Test"
/// shows what it answers) or a DNS server an instance-scoped token sets is
/// an outbound target, held to the instance's policy; a hub-wide token may
/// name any.
#[tokio::test]
async fn an_instance_token_cannot_aim_ca_directories_or_dns_servers_at_forbidden_addresses() {
    let t = TestHub::start(Db::Sqlite).await;
    let admin = Api::admin(&t);
    let writer = alpha_writer(&admin).await;
    let rw = Api::new(&t, Some(&writer));
    let own = t.hub.config.listen.port();
    for url in [
        "https://169.254.169.254/directory".to_string(),
        format!("https://127.0.0.1:{own}/acme/default/directory"),
    ] {
        let body = json!({"name": "meta", "ca": "custom", "directory_url": url,
                          "email": "ops@example.test"});
        let r = rw.post("/api/v1/instances/alpha/ca-accounts", body).await;
        assert_eq!(r.status, 400, "{url}: {}", r.body);
        let text = r.body["error"].as_str().unwrap_or_default();
        assert!(text.contains("refused by policy"), "{url}: {text}");
    }
    let credential = json!({"name": "bind", "kind": "rfc2136",
        "config": {"server": "169.254.169.254:53", "key_name": "k", "algorithm": "hmac-sha256"},
        "secret": {"key": "c2VjcmV0LXNlY3JldC1zZWNyZXQ="}});
    let r = rw
        .post("/api/v1/instances/alpha/credentials", credential.clone())
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("refused by policy")
    );
    // Nothing was stored; the operator may still point them anywhere.
    let listed = admin.get("/api/v1/instances/alpha/credentials").await.body;
    assert!(!listed.to_string().contains("\"bind\""), "{listed}");
    let r = admin
        .post("/api/v1/instances/alpha/credentials", credential)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    t.stop().await;
}
