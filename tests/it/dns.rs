//! Stored credentials, zone bindings, delegations, the technical zone the hub
//! serves, and the managed-challenge APIs (acme-dns, lego httpreq).

use std::time::Duration;

use acmehub::config::TechnicalZoneConfig;
use acmehub::validation::resolver::Resolver;
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::{Value, json};

use crate::admin::Api;
use crate::harness::*;

const ZONE: &str = "acme.hub.test";
const TSIG: &str = "c3VwZXItc2VjcmV0LXRzaWcta2V5LXZhbHVlLTEyMzQ1Ng==";

/// A hub serving the technical zone on a free port, with the test DNS as
/// every zone's authoritative server.
async fn hub_with_zone(db: Db) -> TestHub {
    TestHub::start_with(db, |f| {
        f.dns.technical_zone = Some(TechnicalZoneConfig {
            nameservers: vec!["ns1.hub.test".into()],
            ..TechnicalZoneConfig::new(ZONE, "127.0.0.1:0".parse().unwrap())
        });
        f.dns.propagation_timeout_secs = 3;
    })
    .await
}

/// Makes the test DNS answer as the authoritative server of `zone` too.
fn authoritative(t: &TestHub, zone: &str) {
    t.dns.add_ns(zone, &format!("ns1.{zone}"));
    t.dns
        .set_a(&format!("ns1.{zone}"), &["127.0.0.1".parse().unwrap()]);
}

fn zone_resolver(t: &TestHub) -> Resolver {
    let addr = t.hub.technical_zone.as_ref().unwrap().addr();
    Resolver::new(&[addr], Duration::from_secs(2)).unwrap()
}

async fn txt(r: &Resolver, name: &str) -> Vec<String> {
    r.lookup_txt(name).await.unwrap_or_default()
}

fn rfc2136(name: &str, server: &str) -> Value {
    json!({"name": name, "kind": "rfc2136",
           "config": {"server": server, "key_name": "hub-key", "algorithm": "hmac-sha256"},
           "secret": {"key": TSIG}})
}

#[tokio::test]
async fn credentials_are_write_only_sealed_and_checked() {
    for db in databases() {
        let t = TestHub::start(db).await;
        let api = Api::admin(&t);
        let created = api
            .expect(
                201,
                "/api/v1/instances/default/credentials",
                rfc2136("bind-main", "127.0.0.1:53"),
            )
            .await;
        assert_eq!(created["kind"], "rfc2136");
        assert_eq!(created["config"]["key_name"], "hub-key");
        let fingerprint = created["fingerprint"].as_str().unwrap().to_string();
        assert!(fingerprint.starts_with("hmac-sha256:"));
        assert!(created.get("secret").is_none());

        for (body, field) in [
            (json!({"name": "x", "kind": "nope", "secret": {}}), "kind"),
            (
                json!({"name": "x", "kind": "cloudflare", "secret": {}}),
                "secret.api_token",
            ),
            (
                json!({"name": "x", "kind": "cloudflare", "secret": {"api_token": "t", "extra": "y"}}),
                "secret.extra",
            ),
            (
                json!({"name": "x", "kind": "rfc2136", "config": {"server": "127.0.0.1:53"}, "secret": {"key": TSIG}}),
                "config.key_name",
            ),
            (
                json!({"name": "bad name", "kind": "cloudflare", "secret": {"api_token": "t"}}),
                "name",
            ),
            (json!({"name": "x", "kind": "cloudflare"}), "secret"),
        ] {
            let r = api
                .post("/api/v1/instances/default/credentials", body.clone())
                .await;
            assert_eq!(r.status, 400, "{body}: {}", r.body);
            assert_eq!(r.body["field"], field, "{body}: {}", r.body);
        }
        let r = api
            .post(
                "/api/v1/instances/default/credentials",
                rfc2136("bind-main", "127.0.0.1:53"),
            )
            .await;
        assert_eq!(r.status, 409);

        // Rotation changes the fingerprint; other fields stay.
        let rotated = api
            .patch(
                "/api/v1/instances/default/credentials/bind-main",
                json!({"secret": {"key": "bmV3LXNlY3JldC1rZXktdmFsdWUtNjU0MzIx"}}),
            )
            .await;
        assert_eq!(rotated.status, 200, "{}", rotated.body);
        assert_ne!(rotated.body["fingerprint"], fingerprint.as_str());
        assert_eq!(rotated.body["config"]["server"], "127.0.0.1:53");

        // A credential of another instance cannot be referenced.
        api.expect(201, "/api/v1/instances", json!({"name": "other"}))
            .await;
        let r = api
            .post(
                "/api/v1/instances/other/dns-zones",
                json!({"zone": "customer.test", "credential": "bind-main"}),
            )
            .await;
        assert_eq!(r.status, 400);
        assert_eq!(r.body["field"], "credential");
        assert!(
            r.body["error"]
                .as_str()
                .unwrap()
                .contains("there is no credential \"bind-main\" in instance \"other\""),
            "{}",
            r.body
        );

        // Bound, it cannot be deleted; the error names the binding.
        let zone = api
            .expect(
                201,
                "/api/v1/instances/default/dns-zones",
                json!({"zone": "Customer.Test.", "credential": "bind-main"}),
            )
            .await;
        assert_eq!(zone["zone"], "customer.test");
        assert_eq!(zone["provider"], "rfc2136");
        let r = api
            .delete("/api/v1/instances/default/credentials/bind-main")
            .await;
        assert_eq!(r.status, 409);
        assert!(r.body["error"].as_str().unwrap().contains("customer.test"));
        let generic = api
            .expect(
                201,
                "/api/v1/instances/default/credentials",
                json!({"name": "vault", "kind": "generic", "config": {"username": "svc"}, "secret": {"password": "hunter2-but-longer"}}),
            )
            .await;
        assert_eq!(generic["config"]["username"], "svc");
        let r = api
            .post(
                "/api/v1/instances/default/dns-zones",
                json!({"zone": "x.test", "credential": "vault"}),
            )
            .await;
        assert_eq!(r.status, 400, "a generic credential is no DNS provider");
        assert_eq!(
            api.delete("/api/v1/instances/default/dns-zones/customer.test")
                .await
                .status,
            204
        );
        assert_eq!(
            api.delete("/api/v1/instances/default/credentials/bind-main")
                .await
                .status,
            204
        );

        // No secret anywhere: responses, the audit log, the database file.
        let everything = [
            api.get("/api/v1/instances/default/credentials")
                .await
                .body
                .to_string(),
            api.get("/api/v1/events?limit=1000").await.body.to_string(),
        ]
        .join("\n");
        for secret in [
            TSIG,
            "bmV3LXNlY3JldC1rZXktdmFsdWUtNjU0MzIx",
            "hunter2-but-longer",
        ] {
            assert!(
                !everything.contains(secret),
                "a secret reached an API response"
            );
        }
        if db == Db::Sqlite {
            let dir = t.root_pem.parent().unwrap().parent().unwrap().to_path_buf();
            for file in std::fs::read_dir(&dir).unwrap() {
                let path = file.unwrap().path();
                if path.is_file() {
                    let bytes = std::fs::read(&path).unwrap();
                    for secret in ["hunter2-but-longer", TSIG] {
                        assert!(
                            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                            "{secret} in plaintext in {}",
                            path.display()
                        );
                    }
                }
            }
        }
        t.stop().await;
    }
}

#[tokio::test]
async fn a_refusing_provider_stops_the_zone_test_with_the_reason() {
    let t = TestHub::start(Db::Sqlite).await;
    let api = Api::admin(&t);
    // Nothing answers DNS UPDATE on this port.
    let port = free_port().await;
    api.expect(
        201,
        "/api/v1/instances/default/credentials",
        rfc2136("dead", &format!("tcp://127.0.0.1:{port}")),
    )
    .await;
    api.expect(
        201,
        "/api/v1/instances/default/dns-zones",
        json!({"zone": "customer.test", "credential": "dead"}),
    )
    .await;
    let r = api
        .post(
            "/api/v1/instances/default/dns-zones/customer.test/test",
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["ok"], false);
    let steps = r.body["steps"].as_array().unwrap();
    assert_eq!(steps[0]["step"], "credential");
    assert_eq!(steps[0]["ok"], true);
    assert_eq!(steps[1]["step"], "publish");
    assert_eq!(steps[1]["ok"], false);
    let detail = steps[1]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("DNS validation cannot proceed"),
        "{detail}"
    );
    assert!(
        detail.contains("customer.test") && detail.contains("\"dead\""),
        "{detail}"
    );
    assert!(!detail.contains(TSIG));
    t.stop().await;
}

#[tokio::test]
async fn the_technical_zone_serves_delegations_and_httpreq_publishes_into_it() {
    for db in databases() {
        let t = hub_with_zone(db).await;
        let api = Api::admin(&t);
        let zr = zone_resolver(&t);
        // The apex: SOA and NS.
        let soa = zr.lookup(ZONE, RecordType::SOA).await.unwrap();
        assert!(matches!(soa[0].data, RData::SOA(_)));
        let ns = zr.lookup(ZONE, RecordType::NS).await.unwrap();
        assert!(
            ns.iter()
                .any(|r| r.data.to_string().contains("ns1.hub.test"))
        );

        let d = api
            .expect(
                201,
                "/api/v1/instances/default/delegations",
                json!({"domain": "shop.customer.test"}),
            )
            .await;
        assert_eq!(d["cname_name"], "_acme-challenge.shop.customer.test");
        let target = d["cname_target"].as_str().unwrap().to_string();
        let label = target.strip_suffix(&format!(".{ZONE}")).unwrap();
        assert_eq!(label.len(), 20);
        assert!(!label.contains("shop") && !label.contains("customer"));
        assert_eq!(d["status"], "missing");
        let again = api
            .post(
                "/api/v1/instances/default/delegations",
                json!({"domain": "shop.customer.test"}),
            )
            .await;
        assert_eq!(again.status, 409);

        // The customer creates the CNAME on their authoritative server.
        authoritative(&t, "customer.test");
        t.dns
            .set_cname("_acme-challenge.shop.customer.test", "wrong.example.test");
        let checked = api
            .post(
                "/api/v1/instances/default/delegations/shop.customer.test/check",
                json!({}),
            )
            .await
            .body;
        assert_eq!(checked["status"], "mismatch", "{checked}");
        assert!(
            checked["detail"]
                .as_str()
                .unwrap()
                .contains("wrong.example.test")
        );
        t.dns
            .set_cname("_acme-challenge.shop.customer.test", &target);
        let checked = api
            .post(
                "/api/v1/instances/default/delegations/shop.customer.test/check",
                json!({}),
            )
            .await
            .body;
        assert_eq!(checked["status"], "ok", "{checked}");

        // httpreq: a write token of the instance, names the instance covers.
        let http = t.http();
        let present = |auth: Option<(&str, &str)>, fqdn: &str, value: &str| {
            let mut r = http
                .post(t.url("/httpreq/default/present"))
                .json(&json!({"fqdn": fqdn, "value": value}));
            if let Some((user, pass)) = auth {
                r = r.basic_auth(user, Some(pass));
            }
            r.send()
        };
        let token = t.admin_token();
        let r = present(None, "_acme-challenge.shop.customer.test.", "v1")
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = present(
            Some(("lego", "not-a-token-at-all")),
            "_acme-challenge.shop.customer.test.",
            "v1",
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 401);
        let reader = api
            .expect(
                201,
                "/api/v1/tokens",
                json!({"name": "ro", "scope": "instance:default", "role": "read"}),
            )
            .await;
        let r = present(
            Some(("lego", reader["token"].as_str().unwrap())),
            "_acme-challenge.shop.customer.test.",
            "v1",
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 403);
        let r = present(
            Some(("lego", &token)),
            "_acme-challenge.elsewhere.test.",
            "v1",
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("DNS validation cannot proceed"),
            "{body}"
        );
        assert!(body["error"].as_str().unwrap().contains("elsewhere.test"));

        for value in ["apex-value", "wildcard-value"] {
            let r = present(
                Some(("lego", &token)),
                "_acme-challenge.shop.customer.test.",
                value,
            )
            .await
            .unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        }
        let mut values = txt(&zr, &target).await;
        values.sort();
        assert_eq!(values, vec!["apex-value", "wildcard-value"]);
        // Followed through the CNAME, as a validating CA sees it.
        let r = http
            .post(t.url("/httpreq/default/cleanup"))
            .basic_auth("lego", Some(&token))
            .json(&json!({"fqdn": "_acme-challenge.shop.customer.test.", "value": "apex-value"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(txt(&zr, &target).await, vec!["wildcard-value"]);
        // Unknown names in the zone are NXDOMAIN with the SOA.
        assert!(zr.lookup_txt(&format!("nothing.{ZONE}")).await.is_err());
        t.stop().await;
    }
}

#[tokio::test]
async fn acme_dns_registrations_touch_only_their_own_label() {
    let t = hub_with_zone(Db::Sqlite).await;
    let http = t.http();
    let r = http
        .post(t.url("/acme-dns/default/register"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "registering needs a token of the instance");
    let reg = acme_dns_register(&t).await;
    let (user, key) = (
        reg["username"].as_str().unwrap(),
        reg["password"].as_str().unwrap(),
    );
    let sub = reg["subdomain"].as_str().unwrap();
    assert_eq!(reg["fulldomain"], format!("{sub}.{ZONE}"));
    let update = |user: &str, key: &str, sub: &str, txt: &str| {
        http.post(t.url("/acme-dns/default/update"))
            .header("X-Api-User", user)
            .header("X-Api-Key", key)
            .json(&json!({"subdomain": sub, "txt": txt}))
            .send()
    };
    assert_eq!(
        update(user, "wrong-key", sub, "x").await.unwrap().status(),
        401
    );
    let other: Value = http
        .post(t.url("/acme-dns/default/register"))
        .bearer_auth(t.admin_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = update(user, key, other["subdomain"].as_str().unwrap(), "x")
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "another registration's label");
    // Three values at once (acme-dns keeps only two).
    for v in [
        "one-value-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "two",
        "three",
    ] {
        let r = update(user, key, sub, v).await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let zr = zone_resolver(&t);
    let values = txt(&zr, &format!("{sub}.{ZONE}")).await;
    assert_eq!(values.len(), 3, "{values:?}");
    // The other label holds nothing.
    assert!(
        txt(
            &zr,
            &format!("{}.{ZONE}", other["subdomain"].as_str().unwrap())
        )
        .await
        .is_empty()
    );
    let r = update(user, key, sub, "bad\"value").await.unwrap();
    assert_eq!(r.status(), 400);
    t.stop().await;
}

#[tokio::test]
async fn delegations_need_a_technical_zone() {
    let t = TestHub::start(Db::Sqlite).await;
    let r = Api::admin(&t)
        .post(
            "/api/v1/instances/default/delegations",
            json!({"domain": "shop.customer.test"}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert!(r.body["error"].as_str().unwrap().contains("technical_zone"));
    t.stop().await;
}

#[tokio::test]
async fn an_instance_learns_nothing_of_another_instance_credentials() {
    let t = TestHub::start(Db::Sqlite).await;
    let admin = Api::admin(&t);
    admin
        .expect(201, "/api/v1/instances", json!({"name": "other"}))
        .await;
    admin
        .expect(
            201,
            "/api/v1/instances/other/credentials",
            json!({"name": "bind-other", "kind": "rfc2136",
                "config": {"server": "127.0.0.1:53", "key_name": "k"},
                "secret": {"key": "c2VjcmV0LXNlY3JldC1zZWNyZXQ="}}),
        )
        .await;
    let made = admin
        .expect(
            201,
            "/api/v1/tokens",
            json!({"name": "tenant", "scope": "instance:default", "role": "write"}),
        )
        .await;
    let tenant = Api::new(&t, made["token"].as_str());
    let mut answers = Vec::new();
    for name in ["bind-other", "no-such-credential"] {
        let r = tenant
            .post(
                "/api/v1/instances/default/dns-zones",
                json!({"zone": "x.test", "credential": name}),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.body);
        answers.push(r.body["error"].as_str().unwrap().replace(name, "NAME"));
    }
    assert_eq!(
        answers[0], answers[1],
        "another instance's credential is told apart"
    );
    t.stop().await;
}

/// One raw question to the technical zone over UDP (EDNS payload size when
/// given): the answer's bytes, or None after a second of silence.
async fn zone_udp(
    t: &TestHub,
    name: &str,
    qtype: RecordType,
    edns: Option<u16>,
) -> Option<Vec<u8>> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = t.hub.technical_zone.as_ref().unwrap().addr();
    socket
        .send_to(&raw_query(name, qtype, edns), addr)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let len = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    buf.truncate(len);
    Some(buf)
}

/// The same over TCP (RFC 7766: a 2-byte length before each message).
async fn zone_tcp(t: &TestHub, name: &str, qtype: RecordType) -> Message {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = t.hub.technical_zone.as_ref().unwrap().addr();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = raw_query(name, qtype, Some(65535));
    let len = u16::try_from(request.len()).unwrap();
    stream.write_all(&len.to_be_bytes()).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut answer = vec![0u8; usize::from(len)];
    stream.read_exact(&mut answer).await.unwrap();
    Message::from_vec(&answer).unwrap()
}

fn raw_query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

#[tokio::test]
async fn a_name_of_the_technical_zone_holds_few_values_and_never_amplifies_over_udp() {
    for db in databases() {
        let t = hub_with_zone(db).await;
        let http = t.http();
        let reg = acme_dns_register(&t).await;
        let (user, key) = (
            reg["username"].as_str().unwrap(),
            reg["password"].as_str().unwrap(),
        );
        let sub = reg["subdomain"].as_str().unwrap();
        let fulldomain = format!("{sub}.{ZONE}");
        let update = |txt: String| {
            http.post(t.url("/acme-dns/default/update"))
                .header("X-Api-User", user)
                .header("X-Api-Key", key)
                .json(&json!({"subdomain": sub, "txt": txt}))
                .send()
        };
        // The longest values a client may send, up to the cap (8 by default).
        let value = |i: usize| format!("{i}{}", "v".repeat(254));
        for i in 0..8 {
            let r = update(value(i)).await.unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        }
        let r = update(value(8)).await.unwrap();
        assert_eq!(r.status(), 409, "a ninth value is refused");
        let body: Value = r.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains(&fulldomain) && error.contains("already holds 8 TXT values"),
            "{body}"
        );
        // Sending a live value again only refreshes it.
        let r = update(value(3)).await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

        // Eight 255-byte values are 2 kB: UDP gets a truncated answer within
        // 1232 bytes whatever EDNS size the client claims, TCP the whole set.
        let answer = zone_udp(&t, &format!("{fulldomain}."), RecordType::TXT, Some(65535))
            .await
            .unwrap();
        assert!(answer.len() <= 1232, "{} bytes over UDP", answer.len());
        assert!(Message::from_vec(&answer).unwrap().metadata.truncation);
        let whole = zone_tcp(&t, &format!("{fulldomain}."), RecordType::TXT).await;
        assert_eq!(whole.answers.len(), 8);
        // The resolver a CA uses follows TC to TCP and sees all of them.
        assert_eq!(txt(&zone_resolver(&t), &fulldomain).await.len(), 8);

        // Not our zone: REFUSED, and no recursion on offer.
        let answer = zone_udp(&t, "example.com.", RecordType::A, None)
            .await
            .unwrap();
        let answer = Message::from_vec(&answer).unwrap();
        assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
        assert!(!answer.metadata.recursion_available);

        // httpreq into a delegation's label meets the same cap.
        let api = Api::admin(&t);
        api.expect(
            201,
            "/api/v1/instances/default/delegations",
            json!({"domain": "shop.customer.test"}),
        )
        .await;
        let token = t.admin_token();
        let present = |value: String| {
            http.post(t.url("/httpreq/default/present"))
                .basic_auth("lego", Some(&token))
                .json(&json!({"fqdn": "_acme-challenge.shop.customer.test.", "value": value}))
                .send()
        };
        for i in 0..8 {
            let r = present(value(i)).await.unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        }
        let r = present(value(8)).await.unwrap();
        assert_eq!(r.status(), 409);
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("already holds 8 TXT values"),
            "{body}"
        );
        t.stop().await;
    }
}

/// An acme-dns registration on the default instance (admin token).
async fn acme_dns_register(t: &TestHub) -> Value {
    t.http()
        .post(t.url("/acme-dns/default/register"))
        .bearer_auth(t.admin_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The acme-dns API as acme.sh and lego's acme-dns provider speak it:
/// acme.sh registers with an empty POST and posts its JSON as a form
/// (curl's default Content-Type), lego sends `application/json`; a wrong
/// key is 401 whatever the body; `allowfrom` is kept and enforced.
#[tokio::test]
async fn acme_dns_takes_what_acme_sh_and_lego_send_and_keeps_allowfrom() {
    let t = hub_with_zone(Db::Sqlite).await;
    let http = t.http();
    let zr = zone_resolver(&t);
    let register = |body: Option<&'static str>| {
        let mut r = http
            .post(t.url("/acme-dns/default/register"))
            .bearer_auth(t.admin_token());
        if let Some(body) = body {
            r = r.header("content-type", "application/json").body(body);
        }
        r.send()
    };
    // acme.sh: no body, no Content-Type.
    let r = register(None).await.unwrap();
    assert_eq!(r.status(), 201);
    let reg: Value = r.json().await.unwrap();
    assert_eq!(reg["allowfrom"], json!([]));
    let (user, key, sub) = (
        reg["username"].as_str().unwrap(),
        reg["password"].as_str().unwrap(),
        reg["subdomain"].as_str().unwrap(),
    );
    let update = |user: &str, key: &str, content_type: Option<&str>, body: String| {
        let mut r = http
            .post(t.url("/acme-dns/default/update"))
            .header("X-Api-User", user)
            .header("X-Api-Key", key)
            .body(body);
        if let Some(ct) = content_type {
            r = r.header("content-type", ct);
        }
        r.send()
    };
    let acme_sh_body =
        |sub: &str, txt: &str| format!("{{\"subdomain\":\"{sub}\", \"txt\": \"{txt}\"}}");
    // acme.sh's update: curl --data without a Content-Type of its own.
    let r = update(
        user,
        key,
        Some("application/x-www-form-urlencoded"),
        acme_sh_body(sub, "from-acme-sh"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("\"from-acme-sh\""));
    // lego's provider: application/json; and a body with no type at all.
    let r = update(
        user,
        key,
        Some("application/json"),
        acme_sh_body(sub, "from-lego"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = update(user, key, None, acme_sh_body(sub, "untyped"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut values = txt(&zr, &format!("{sub}.{ZONE}")).await;
    values.sort();
    assert_eq!(values, ["from-acme-sh", "from-lego", "untyped"]);
    // A wrong key is 401 whatever the body and its type say.
    for ct in [
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        None,
    ] {
        let r = update(user, "wrong-key", ct, "not json at all".into())
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{ct:?}");
    }
    // The right key with a body that is not JSON: 400, nothing written.
    let r = update(user, key, Some("text/plain"), "txt=nope".into())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(txt(&zr, &format!("{sub}.{ZONE}")).await.len(), 3);

    // allowfrom as acme-dns's own example writes it (host bits set).
    let r = register(Some(
        r#"{"allowfrom": ["192.168.100.1/24", "2002:c0a8:2a00::1/40"]}"#,
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let far: Value = r.json().await.unwrap();
    assert_eq!(
        far["allowfrom"],
        json!(["192.168.100.0/24", "2002:c0a8:2a00::/40"])
    );
    let (far_user, far_key, far_sub) = (
        far["username"].as_str().unwrap(),
        far["password"].as_str().unwrap(),
        far["subdomain"].as_str().unwrap(),
    );
    let r = update(far_user, far_key, None, acme_sh_body(far_sub, "from-here"))
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "127.0.0.1 is outside allowfrom");
    assert!(txt(&zr, &format!("{far_sub}.{ZONE}")).await.is_empty());
    let near: Value = register(Some(r#"{"allowfrom": ["127.0.0.0/8"]}"#))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = update(
        near["username"].as_str().unwrap(),
        near["password"].as_str().unwrap(),
        None,
        acme_sh_body(near["subdomain"].as_str().unwrap(), "inside"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    // A bad network names itself, and nothing is registered.
    let api = Api::admin(&t);
    let registrations = || async {
        let events = api.get("/api/v1/events").await.body;
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "acme-dns.register")
            .count()
    };
    let before = registrations().await;
    let r = register(Some(r#"{"allowfrom": ["10.0.0.0/8", "not-a-network"]}"#))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["field"], "allowfrom[1]", "{body}");
    assert!(body["error"].as_str().unwrap().contains("not-a-network"));
    let r = register(Some(r#"{"allowfrom": "10.0.0.0/8"}"#))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(registrations().await, before);

    let r = http
        .get(t.url("/acme-dns/default/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    t.stop().await;
}

/// lego's httpreq follows the customer's `_acme-challenge` CNAME by default
/// and then names the delegation's target in the technical zone: that is
/// accepted for the instance's own delegations, and nothing else is.
#[tokio::test]
async fn httpreq_takes_the_cname_target_of_the_instances_own_delegation_only() {
    let t = hub_with_zone(Db::Sqlite).await;
    let api = Api::admin(&t);
    let zr = zone_resolver(&t);
    let http = t.http();
    let target = |d: &Value| d["cname_target"].as_str().unwrap().to_string();
    let ours = api
        .expect(
            201,
            "/api/v1/instances/default/delegations",
            json!({"domain": "follow.customer.test"}),
        )
        .await;
    api.expect(201, "/api/v1/instances", json!({"name": "other"}))
        .await;
    let theirs = api
        .expect(
            201,
            "/api/v1/instances/other/delegations",
            json!({"domain": "theirs.customer.test"}),
        )
        .await;
    let acme_dns = acme_dns_register(&t).await;
    let call = |action: &str, fqdn: String, value: &str, ct: &str| {
        http.post(t.url(&format!("/httpreq/default/{action}")))
            .basic_auth("lego", Some(t.admin_token()))
            .header("content-type", ct)
            .body(json!({"fqdn": fqdn, "value": value}).to_string())
            .send()
    };
    // As lego sends it after following the CNAME: the target, with a dot.
    let r = call(
        "present",
        format!("{}.", target(&ours)),
        "followed",
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(txt(&zr, &target(&ours)).await, ["followed"]);
    // Without following: the _acme-challenge name lands in the same place.
    let r = call(
        "present",
        "_acme-challenge.follow.customer.test.".into(),
        "direct",
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let mut values = txt(&zr, &target(&ours)).await;
    values.sort();
    assert_eq!(values, ["direct", "followed"]);
    let r = call("cleanup", target(&ours), "followed", "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(txt(&zr, &target(&ours)).await, ["direct"]);
    // Another instance's target, an acme-dns label, any other name: refused.
    for fqdn in [
        target(&theirs),
        format!("{}.{ZONE}", acme_dns["subdomain"].as_str().unwrap()),
        format!("nothing.{ZONE}"),
        "www.customer.test".into(),
    ] {
        let r = call("present", fqdn.clone(), "sneaky", "application/json")
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{fqdn}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["field"], "fqdn", "{body}");
    }
    assert!(txt(&zr, &target(&theirs)).await.is_empty());
    // A stranger is 401 before any body is read, whatever its type.
    let r = http
        .post(t.url("/httpreq/default/present"))
        .basic_auth("lego", Some("not-a-token-at-all"))
        .header("content-type", "text/plain")
        .body("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    t.stop().await;
}
