//! Outbound safety end to end: which targets an instance may make the hub
//! reach (validation and notifications), who may widen that, and what a
//! refused target's error says.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use instant_acme::{ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy};
use serde_json::json;

use crate::admin::Api;
use crate::harness::*;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn retry() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .backoff(1.5)
}

/// A write token scoped to `instance`.
async fn scoped_token(admin: &Api<'_>, instance: &str) -> String {
    let made = admin
        .expect(
            201,
            "/api/v1/tokens",
            json!({"name": format!("{instance}-rw"), "scope": format!("instance:{instance}"), "role": "write"}),
        )
        .await;
    made["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn only_a_hub_wide_token_lets_an_instance_reach_private_targets() {
    for db in databases() {
        let t = TestHub::start(db).await;
        let admin = Api::admin(&t);
        let created = admin
            .expect(201, "/api/v1/instances", json!({"name": "edge"}))
            .await;
        // Unset: the hub's `[validation] allow_private_targets` (true).
        assert_eq!(created["allow_private_targets"], json!(null), "{created}");
        assert_eq!(created["effective_allow_private_targets"], json!(true));
        let secret = scoped_token(&admin, "edge").await;
        let scoped = Api::new(&t, Some(&secret));

        // Restricting is the instance's own business.
        let r = scoped
            .patch(
                "/api/v1/instances/edge",
                json!({"allow_private_targets": false}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["allow_private_targets"], json!(false));
        assert_eq!(r.body["effective_allow_private_targets"], json!(false));
        // Widening is not: neither allowing nor falling back to the hub
        // default (which allows).
        for body in [
            json!({"allow_private_targets": true}),
            json!({"allow_private_targets": null}),
        ] {
            let r = scoped.patch("/api/v1/instances/edge", body.clone()).await;
            assert_eq!(r.status, 403, "{body}: {}", r.body);
        }
        // A form sent back unchanged is no widening.
        let r = scoped
            .patch(
                "/api/v1/instances/edge",
                json!({"allow_private_targets": false, "description": "faces the Internet"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let shown = scoped.get("/api/v1/instances/edge").await;
        assert_eq!(shown.body["allow_private_targets"], json!(false));
        // The hub-wide token may widen.
        let r = admin
            .patch(
                "/api/v1/instances/edge",
                json!({"allow_private_targets": true}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["effective_allow_private_targets"], json!(true));
        let made = admin
            .expect(
                201,
                "/api/v1/instances",
                json!({"name": "public", "allow_private_targets": false}),
            )
            .await;
        assert_eq!(made["allow_private_targets"], json!(false));
        t.stop().await;
    }
}

#[tokio::test]
async fn an_instance_without_private_targets_refuses_loopback_by_policy() {
    let t = TestHub::start(Db::Sqlite).await;
    let admin = Api::admin(&t);
    let r = admin
        .patch(
            "/api/v1/instances/default",
            json!({"allow_private_targets": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let account = t.account().await;
    let identifiers = [Identifier::Dns("inside.example.test".into())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .unwrap();
    t.dns.set_a("inside.example.test", &[LOOPBACK]);
    // A responder that would answer correctly: the refusal is the policy's.
    let http = Http01Responder::start(t.http01_port).await;
    let mut authorizations = order.authorizations();
    let mut authz = authorizations.next().await.unwrap().unwrap();
    let mut challenge = authz.challenge(ChallengeType::Http01).unwrap();
    http.set(&challenge.token, challenge.key_authorization().as_str());
    let _ = challenge.set_ready().await;
    let Err(error) = order.poll_ready(&retry()).await else {
        panic!("the order must not become ready")
    };
    assert_eq!(order.state().status, OrderStatus::Invalid);
    let text = format!("{error:?}");
    assert!(
        text.contains("127.0.0.1 is loopback: refused by policy"),
        "{text}"
    );
    t.stop().await;
}

#[tokio::test]
async fn instance_scoped_tokens_cannot_point_notifications_at_forbidden_addresses() {
    let t = TestHub::start(Db::Sqlite).await;
    let admin = Api::admin(&t);
    let secret = scoped_token(&admin, "default").await;
    let scoped = Api::new(&t, Some(&secret));
    let channels = "/api/v1/instances/default/notification-channels";
    let hub_port = t.base_url.rsplit(':').next().unwrap().to_string();
    t.dns.set_a(
        "metadata.example.test",
        &["169.254.169.254".parse().unwrap()],
    );
    for (body, field, said) in [
        (
            json!({"name": "m", "kind": "webhook", "url": "http://169.254.169.254/hook"}),
            "url",
            "169.254.169.254 is link-local: refused by policy",
        ),
        (
            json!({"name": "m", "kind": "webhook", "url": "http://metadata.example.test/hook"}),
            "url",
            "169.254.169.254 is link-local: refused by policy",
        ),
        (
            json!({"name": "m", "kind": "webhook", "url": format!("https://127.0.0.1:{hub_port}/api/v1/tokens")}),
            "url",
            "the hub's own HTTPS listener: refused by policy",
        ),
        (
            json!({"name": "m", "kind": "email", "smtp_host": "169.254.169.254",
                   "from": "hub@example.test", "to": ["ops@example.test"]}),
            "smtp_host",
            "169.254.169.254 is link-local: refused by policy",
        ),
    ] {
        let r = scoped.post(channels, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.body["field"], field, "{body}");
        assert!(
            r.body["error"].as_str().unwrap_or_default().contains(said),
            "{body}: {}",
            r.body
        );
    }
    // The hub-wide token may set any target (an operator's own choice).
    admin
        .expect(
            201,
            channels,
            json!({"name": "ops", "kind": "webhook", "url": "http://169.254.169.254/hook"}),
        )
        .await;

    // A name that was fine when the channel was made is checked again when
    // it is used: DNS can change.
    t.dns.set_a("hooks.example.test", &[LOOPBACK]);
    let made = scoped
        .expect(
            201,
            channels,
            json!({"name": "later", "kind": "webhook", "url": "http://hooks.example.test:9/hook"}),
        )
        .await;
    assert_eq!(made["name"], "later");
    t.dns
        .set_a("hooks.example.test", &["169.254.169.254".parse().unwrap()]);
    let tested = scoped
        .expect(200, &format!("{channels}/later/test"), json!({}))
        .await;
    assert_eq!(tested["delivered"], json!(false), "{tested}");
    assert!(
        tested["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("169.254.169.254 is link-local: refused by policy"),
        "{tested}"
    );
    t.stop().await;
}
