//! The web console over real HTTPS: signing in and out, the form token on
//! every post, read-only and instance-scoped tokens, secrets that never
//! reach a page, "Save and Test" against a real ACME directory, and an
//! access key made on a page getting a real certificate that the inventory
//! page then shows and revokes.

use instant_acme::{ExternalAccountKey, OrderStatus};
use serde_json::json;

use crate::admin::{Api, dns, eab_account, finalize};
use crate::harness::*;

/// A browser, as far as the console can tell: a cookie jar, no automatic
/// redirects (the test looks at each one).
struct Browser<'a> {
    t: &'a TestHub,
    http: reqwest::Client,
    cookies: std::collections::BTreeMap<String, String>,
}

struct Page {
    status: u16,
    location: String,
    set_cookies: Vec<String>,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    /// The first form token on the page.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form token");
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    /// The text of the element with this id.
    fn element(&self, id: &str) -> String {
        let marker = format!("id=\"{id}\"");
        let at = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no #{id} in {}", self.body));
        let rest = &self.body[at..];
        let start = rest.find('>').unwrap() + 1;
        rest[start..start + rest[start..].find('<').unwrap()].to_string()
    }
}

impl<'a> Browser<'a> {
    fn new(t: &'a TestHub) -> Self {
        let root = std::fs::read(&t.root_pem).unwrap();
        Self {
            t,
            http: reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Default::default(),
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if cookie.is_empty() {
            request
        } else {
            request.header("cookie", cookie)
        };
        let r = request.send().await.unwrap();
        let set_cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        for c in &set_cookies {
            let (name, rest) = c.split_once('=').unwrap();
            let value = rest.split(';').next().unwrap();
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.into(), value.into());
            }
        }
        Page {
            status: r.status().as_u16(),
            location: r
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            set_cookies,
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(self.t.url(path));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.http.post(self.t.url(path)).form(form);
        self.send(request).await
    }

    /// A browser whose connections come from `ip`, one of the loopback
    /// addresses: the hub tells clients apart by address.
    fn at(t: &'a TestHub, ip: &str) -> Self {
        let mut b = Self::new(t);
        let root = std::fs::read(&t.root_pem).unwrap();
        b.http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .local_address(Some(ip.parse().unwrap()))
            .build()
            .unwrap();
        b
    }

    /// Signs in with a user name and password.
    async fn sign_in_as(&mut self, user: &str, password: &str) -> Page {
        let csrf = self.get("/ui/login").await.csrf();
        self.post(
            "/ui/login",
            &[("csrf", &csrf), ("user", user), ("password", password)],
        )
        .await
    }

    async fn sign_in(&mut self, token: &str) -> Page {
        let login = self.get("/ui/login").await;
        let csrf = login.csrf();
        self.post("/ui/login", &[("csrf", &csrf), ("token", token)])
            .await
    }
}

#[tokio::test]
async fn signing_in_and_out_and_the_form_token_on_every_post() {
    for db in databases() {
        let t = TestHub::start(db).await;
        let api = Api::admin(&t);
        let mut b = Browser::new(&t);

        let page = b.get("/ui/instances").await;
        assert_eq!((page.status, page.location.as_str()), (303, "/ui/login"));

        // A wrong token gets no session.
        let page = b.sign_in("ahk_not-a-token").await;
        assert_eq!(page.status, 401);
        assert!(page.body.contains("not valid"), "{}", page.body);
        assert!(!b.cookies.contains_key("__Host-acmehub_session"));
        // A sign-in post without the sign-in form's token is refused, even
        // with the right token: another site cannot sign this browser in.
        let mut other = Browser::new(&t);
        let page = other
            .post(
                "/ui/login",
                &[("csrf", "guess"), ("token", &t.admin_token())],
            )
            .await;
        assert_eq!(page.status, 403);
        assert!(!other.cookies.contains_key("__Host-acmehub_session"));

        let page = b.sign_in(&t.admin_token()).await;
        assert_eq!(
            (page.status, page.location.as_str()),
            (303, "/ui/instances")
        );
        let session = page
            .set_cookies
            .iter()
            .find(|c| c.starts_with("__Host-acmehub_session="))
            .unwrap();
        for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/;"] {
            assert!(session.contains(attribute), "{session}");
        }

        let page = b.get("/ui/instances").await;
        assert_eq!(page.status, 200);
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
        assert!(!page.body.contains("<script>"), "no inline script");
        assert_eq!(page.headers["cache-control"], "no-store");
        let csrf = page.csrf();

        // A post without the form token, or with another, changes nothing.
        let page = b.post("/ui/instances", &[("name", "forged")]).await;
        assert_eq!(page.status, 403);
        assert!(page.body.contains("form token"), "{}", page.body);
        let page = b
            .post("/ui/instances", &[("name", "forged"), ("csrf", "0123")])
            .await;
        assert_eq!(page.status, 403);
        assert_eq!(api.get("/api/v1/instances/forged").await.status, 404);

        // With it, the instance is made, as through the API.
        let page = b
            .post(
                "/ui/instances",
                &[("csrf", &csrf), ("name", "shop"), ("issuer", "local")],
            )
            .await;
        assert_eq!(
            (page.status, page.location.as_str()),
            (303, "/ui/i/shop?done=created")
        );
        assert_eq!(api.get("/api/v1/instances/shop").await.status, 200);
        // A refused form says why, keeps what was typed, and changes nothing.
        let page = b
            .post(
                "/ui/instances",
                &[
                    ("csrf", &csrf),
                    ("name", "Bad Name"),
                    ("description", "kept"),
                ],
            )
            .await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("role=\"alert\""), "{}", page.body);
        assert!(page.body.contains("value=\"kept\""));
        let listed = api.get("/api/v1/instances").await;
        assert_eq!(listed.body.as_array().unwrap().len(), 2);

        // Signing out ends the session on the server: the old cookie is dead.
        let cookie = b.cookies["__Host-acmehub_session"].clone();
        let page = b.post("/ui/logout", &[("csrf", &csrf)]).await;
        assert_eq!((page.status, page.location.as_str()), (303, "/ui/login"));
        b.cookies.insert("__Host-acmehub_session".into(), cookie);
        let page = b.get("/ui/instances").await;
        assert_eq!((page.status, page.location.as_str()), (303, "/ui/login"));
        t.stop().await;
    }
}

#[tokio::test]
async fn read_and_instance_tokens_see_and_do_only_what_they_may() {
    let t = TestHub::start(Db::Sqlite).await;
    let api = Api::admin(&t);
    assert_eq!(
        api.post("/api/v1/instances", json!({"name": "other"}))
            .await
            .status,
        201
    );
    let r = api
        .post(
            "/api/v1/tokens",
            json!({"name": "viewer", "scope": "instance:default", "role": "read"}),
        )
        .await;
    let viewer = r.body["token"].as_str().unwrap().to_string();
    let mut b = Browser::new(&t);
    let page = b.sign_in(&viewer).await;
    assert_eq!(
        (page.status, page.location.as_str()),
        (303, "/ui/i/default")
    );

    let page = b.get("/ui/instances").await;
    assert!(page.body.contains("/ui/i/default"));
    assert!(!page.body.contains("/ui/i/other"), "another instance leaks");
    assert!(!page.body.contains("Create an instance"));
    assert_eq!(b.get("/ui/i/other").await.status, 404);
    assert_eq!(b.get("/ui/i/other/certificates").await.status, 404);

    for path in [
        "/ui/i/default/keys",
        "/ui/i/default/ca-accounts",
        "/ui/i/default/dns",
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        for write in [
            "Create an access key",
            "Add a CA account",
            "Bind a zone",
            "Revoke",
            ">Save<",
        ] {
            assert!(
                !page.body.contains(write),
                "{path} shows {write:?} to a read token"
            );
        }
    }
    // Its posts are refused even with a valid form token.
    let csrf = b.get("/ui/i/default/keys").await.csrf();
    let page = b
        .post(
            "/ui/i/default/keys",
            &[
                ("csrf", &csrf),
                ("name", "sneaky"),
                ("allowed_identifiers", "x.test"),
            ],
        )
        .await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("read-only"), "{}", page.body);
    let keys = api.get("/api/v1/instances/default/access-keys").await;
    assert_eq!(keys.body.as_array().unwrap().len(), 0);

    // Revoking the token ends its console session.
    let tokens = api.get("/api/v1/tokens").await;
    let id = tokens.body[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        api.delete(&format!("/api/v1/tokens/{id}")).await.status,
        204
    );
    let page = b.get("/ui/i/default").await;
    assert_eq!((page.status, page.location.as_str()), (303, "/ui/login"));
    t.stop().await;
}

#[tokio::test]
async fn a_credential_secret_never_reaches_a_page() {
    let t = TestHub::start(Db::Sqlite).await;
    let mut b = Browser::new(&t);
    b.sign_in(&t.admin_token()).await;
    let secret = "c2VjcmV0LXRzaWcta2V5LXRoYXQtbXVzdC1uZXZlci1zaG93";

    let page = b.get("/ui/i/default/credentials?kind=rfc2136").await;
    assert!(
        page.body.contains("name=\"config.server\""),
        "kind-specific fields"
    );
    assert!(page.body.contains("name=\"secret.key\" type=\"password\""));
    let csrf = page.csrf();
    // Refused (no server): drawn again with the error, without the secret.
    let page = b
        .post(
            "/ui/i/default/credentials",
            &[
                ("csrf", &csrf),
                ("kind", "rfc2136"),
                ("name", "bind"),
                ("config.key_name", "hub-key"),
                ("secret.key", secret),
            ],
        )
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("role=\"alert\""), "{}", page.body);
    assert!(
        page.body.contains("value=\"hub-key\""),
        "what was typed is kept"
    );
    assert!(
        !page.body.contains(secret),
        "a refused form echoes the secret"
    );

    let page = b
        .post(
            "/ui/i/default/credentials",
            &[
                ("csrf", &csrf),
                ("kind", "rfc2136"),
                ("name", "bind"),
                ("config.server", "127.0.0.1:53"),
                ("config.key_name", "hub-key"),
                ("secret.key", secret),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let list = b.get("/ui/i/default/credentials").await;
    assert!(list.body.contains(">bind</a>"));
    let api = Api::admin(&t);
    let stored = api.get("/api/v1/instances/default/credentials/bind").await;
    let fingerprint = stored.body["fingerprint"].as_str().unwrap().to_string();
    assert!(list.body.contains(&fingerprint), "shown by its fingerprint");
    let id = stored.body["id"].as_str().unwrap();
    let detail = b.get(&format!("/ui/i/default/credentials/{id}")).await;
    for page in [&list, &detail] {
        assert!(!page.body.contains(secret), "the secret is on a page");
    }
    assert!(detail.body.contains("value=\"127.0.0.1:53\""));

    // Saving without a secret keeps it; typing one rotates it.
    let path = format!("/ui/i/default/credentials/{id}");
    let form = [
        ("csrf", csrf.as_str()),
        ("description", "primary"),
        ("config.server", "127.0.0.1:53"),
        ("config.key_name", "hub-key"),
    ];
    let page = b.post(&path, &form).await;
    assert_eq!(page.location, format!("{path}?done=saved"));
    let kept = api.get("/api/v1/instances/default/credentials/bind").await;
    assert_eq!(kept.body["fingerprint"], fingerprint.as_str());
    let mut rotate = form.to_vec();
    rotate.push((
        "secret.key",
        "b3RoZXItc2VjcmV0LWtleS12YWx1ZS1mb3Itcm90YXRpb24=",
    ));
    let page = b.post(&path, &rotate).await;
    assert_eq!(page.location, format!("{path}?done=rotated"));
    let rotated = api.get("/api/v1/instances/default/credentials/bind").await;
    assert_ne!(rotated.body["fingerprint"], fingerprint.as_str());
    assert_eq!(rotated.body["description"], "primary");
    t.stop().await;
}

#[tokio::test]
async fn save_and_test_shows_the_api_and_its_endpoints() {
    let t = TestHub::start(Db::Sqlite).await;
    let api = Api::admin(&t);
    assert_eq!(
        api.post(
            "/api/v1/instances",
            json!({"name": "relay", "issuer": "upstream"})
        )
        .await
        .status,
        201
    );
    let mut b = Browser::new(&t);
    b.sign_in(&t.admin_token()).await;
    let csrf = b.get("/ui/i/relay/ca-accounts").await.csrf();
    let root = std::fs::read_to_string(&t.root_pem).unwrap();
    // The hub's own default instance serves as the upstream ACME CA.
    let page = b
        .post(
            "/ui/i/relay/ca-accounts",
            &[
                ("csrf", &csrf),
                ("name", "upstream-a"),
                ("ca", "custom"),
                ("directory_url", &t.directory),
                ("trusted_roots_pem", &root),
                ("email", "ops@example.test"),
                ("eab_hmac_key", ""),
                ("action", "test"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.element("test-title"), "API is available");
    let new_order = t.directory.replace("/directory", "/new-order");
    assert!(page.body.contains(&new_order), "{}", page.body);
    let stored = api
        .get("/api/v1/instances/relay/ca-accounts/upstream-a")
        .await;
    assert_eq!(stored.body["account_status"], "valid");

    // A directory that does not answer: the dialog says so and why.
    let id = stored.body["id"].as_str().unwrap();
    let page = b
        .post(
            &format!("/ui/i/relay/ca-accounts/{id}"),
            &[
                ("csrf", &csrf),
                ("directory_url", &t.url("/acme/nowhere/directory")),
                ("trusted_roots_pem", &root),
                ("email", "ops@example.test"),
                ("action", "test"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.element("test-title").contains("did not answer"),
        "{}",
        page.body
    );
    t.stop().await;
}

#[tokio::test]
async fn an_access_key_made_on_a_page_gets_a_certificate_the_inventory_shows_and_revokes() {
    let t = TestHub::start(Db::Sqlite).await;
    let mut b = Browser::new(&t);
    b.sign_in(&t.admin_token()).await;
    let csrf = b.get("/ui/i/default/keys").await.csrf();
    let page = b
        .post(
            "/ui/i/default/keys",
            &[
                ("csrf", &csrf),
                ("name", "web"),
                ("allowed_identifiers", "*.console.test"),
                ("validation", "pre-authorized"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let (kid, hmac) = (page.element("new-kid"), page.element("new-hmac"));
    assert!(
        page.body
            .contains(&format!("--eab-kid {kid} --eab-hmac-key={hmac}"))
    );
    assert!(page.body.contains("lego --server"));
    // The key is shown once: the list afterwards has the kid, not the HMAC key.
    let list = b.get("/ui/i/default/keys").await;
    assert!(list.body.contains(&kid) && !list.body.contains(&hmac));

    use base64::Engine;
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&hmac)
        .unwrap();
    let account = eab_account(&t, &t.directory, Some(&ExternalAccountKey::new(kid, &key)))
        .await
        .unwrap();
    let mut order = account
        .new_order(&instant_acme::NewOrder::new(&dns(&["www.console.test"])))
        .await
        .unwrap();
    assert_eq!(order.state().status, OrderStatus::Ready);
    finalize(&mut order).await;

    let page = b.get("/ui/i/default/certificates?status=active").await;
    assert!(page.body.contains("www.console.test"), "{}", page.body);
    let instance = Api::admin(&t).get("/api/v1/instances/default").await;
    let validity = instance.body["effective_cert_validity_days"]
        .as_i64()
        .unwrap();
    assert!(
        page.body.contains(&format!("days-ok\">{}<", validity - 1))
            || page.body.contains(&format!("days-ok\">{validity}<")),
        "days remaining: {}",
        page.body
    );
    let at = page.body.find("data-id=\"").unwrap() + "data-id=\"".len();
    let id = page.body[at..at + page.body[at..].find('"').unwrap()].to_string();
    let chain = b
        .get(&format!("/ui/i/default/certificates/{id}/chain.pem"))
        .await;
    assert!(chain.body.starts_with("-----BEGIN CERTIFICATE-----"));
    let filtered = b
        .get("/ui/i/default/certificates?identifier=other.test")
        .await;
    assert!(!filtered.body.contains("www.console.test"));

    let page = b
        .post(
            &format!("/ui/i/default/certificates/{id}/revoke"),
            &[("csrf", &csrf), ("reason", "4")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let page = b.get(&format!("/ui/i/default/certificates/{id}")).await;
    assert!(page.body.contains("status-revoked"), "{}", page.body);
    assert!(!page.body.contains("Revoke certificate"));
    let events = b.get("/ui/events?action=certificate.revoke").await;
    assert!(events.body.contains("certificate.revoke"));
    assert!(events.body.contains("token:bootstrap"), "{}", events.body);
    let orders = b.get("/ui/i/default/orders?status=valid").await;
    assert!(orders.body.contains("www.console.test"));
    t.stop().await;
}

#[tokio::test]
async fn the_inventory_lists_what_the_hub_manages_with_its_step_and_renews_it() {
    let t = crate::managed::hub_with_zone(Db::Sqlite).await;
    let api = Api::admin(&t);
    api.expect(
        201,
        "/api/v1/instances/default/delegations",
        json!({"domain": "m.console.test"}),
    )
    .await;
    let mut b = Browser::new(&t);
    b.sign_in(&t.admin_token()).await;
    let csrf = b.get("/ui/i/default/certificates").await.csrf();
    // An IP address is refused (DNS names only), and nothing is made.
    let page = b
        .post(
            "/ui/i/default/managed",
            &[
                ("csrf", &csrf),
                ("name", "shop"),
                ("identifiers", "192.0.2.1"),
                ("key_type", "ec-p256"),
                ("auto_renew", "on"),
            ],
        )
        .await;
    assert!(page.body.contains("role=\"alert\""), "{}", page.body);
    assert!(page.body.contains("192.0.2.1"), "what was typed is kept");
    let path = "/api/v1/instances/default/managed-certificates/shop";
    assert_eq!(api.get(path).await.status, 404);
    let page = b
        .post(
            "/ui/i/default/managed",
            &[
                ("csrf", &csrf),
                ("name", "shop"),
                ("identifiers", "m.console.test"),
                ("key_type", "ec-p384"),
                ("auto_renew", "on"),
                ("tags", "lb\nweb"),
            ],
        )
        .await;
    assert_eq!(
        page.location, "/ui/i/default/certificates?done=created",
        "{}",
        page.body
    );
    let pending = crate::managed::wait_for(&api, path, |m| m["status"] == "pending").await;
    assert_eq!(pending["key_type"], "ec-p384");
    assert_eq!(pending["tags"], json!(["lb", "web"]));
    let page = b.get("/ui/i/default/certificates").await;
    assert!(page.body.contains(">shop<"), "{}", page.body);
    assert!(page.body.contains("status-pending"));
    let step = pending["step"].as_str().unwrap();
    assert!(
        !step.is_empty() && page.body.contains(&askama_escape(step)),
        "{}",
        page.body
    );
    // Renewing one that is still waiting is refused, as through the API.
    let csrf = page.csrf();
    let id = pending["id"].as_str().unwrap();
    let renew = b
        .post(
            &format!("/ui/i/default/managed/{id}/renew"),
            &[("csrf", &csrf)],
        )
        .await;
    let api_says = api.post(&format!("{path}/renew"), json!({})).await.status;
    match api_says {
        409 => assert_eq!(renew.status, 409, "{}", renew.body),
        _ => assert_eq!(renew.status, 303, "{}", renew.body),
    }
    t.stop().await;
}

/// Text as an HTML page shows it (askama escapes quotes and angle brackets).
fn askama_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

#[tokio::test]
async fn a_console_user_signs_in_with_a_password_and_is_locked_after_five_failures() {
    let t = TestHub::start(Db::Sqlite).await;
    let api = Api::admin(&t);
    let password = "correct horse battery staple";
    for (body, field) in [
        (
            json!({"name": "alice", "password": "short", "scope": "instance:default", "role": "write"}),
            "password",
        ),
        (
            json!({"name": "a b", "password": password, "scope": "instance:default", "role": "write"}),
            "name",
        ),
        (
            json!({"name": "alice", "password": password, "scope": "instance:nowhere", "role": "write"}),
            "scope",
        ),
        (
            json!({"name": "alice", "password": password, "scope": "admin", "role": "root"}),
            "role",
        ),
    ] {
        let r = api.post("/api/v1/users", body.clone()).await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (400, Some(field)),
            "{body}: {}",
            r.body
        );
    }
    let r = api
        .post(
            "/api/v1/users",
            json!({"name": "alice", "password": password, "scope": "instance:default", "role": "write"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let listed = api.get("/api/v1/users").await;
    let text = listed.body.to_string();
    assert!(text.contains("alice") && text.contains("instance:default"));
    assert!(
        !text.contains(password) && !text.contains("argon2"),
        "{text}"
    );
    assert_eq!(
        api.post(
            "/api/v1/users",
            json!({"name": "alice", "password": password, "scope": "admin", "role": "read"})
        )
        .await
        .status,
        409
    );

    let mut b = Browser::new(&t);
    let csrf = b.get("/ui/login").await.csrf();
    let page = b
        .post(
            "/ui/login",
            &[("csrf", &csrf), ("user", "alice"), ("password", password)],
        )
        .await;
    assert_eq!(
        (page.status, page.location.as_str()),
        (303, "/ui/i/default")
    );
    // What the user does is recorded as the user's.
    let csrf = b.get("/ui/i/default/keys").await.csrf();
    let page = b
        .post(
            "/ui/i/default/keys",
            &[
                ("csrf", &csrf),
                ("name", "by-alice"),
                ("allowed_identifiers", "a.test"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let events = api.get("/api/v1/events?action=access-key.create").await;
    assert_eq!(
        events.body["items"][0]["actor"], "user:alice",
        "{}",
        events.body
    );
    // An instance user sees its instance only.
    assert_eq!(b.get("/ui/i/other").await.status, 404);

    // An unknown user and a wrong password get the same words.
    let mut other = Browser::new(&t);
    for (name, pw) in [("mallory", password), ("alice", "wrong password 1")] {
        let csrf = other.get("/ui/login").await.csrf();
        let page = other
            .post(
                "/ui/login",
                &[("csrf", &csrf), ("user", name), ("password", pw)],
            )
            .await;
        assert_eq!(page.status, 401);
        assert!(
            page.body.contains("Wrong user name or password"),
            "{}",
            page.body
        );
    }
    // Five failures in a row lock the user out from this address, even
    // against the right password, in the same words.
    for _ in 0..4 {
        let csrf = other.get("/ui/login").await.csrf();
        other
            .post(
                "/ui/login",
                &[
                    ("csrf", &csrf),
                    ("user", "alice"),
                    ("password", "wrong again!!"),
                ],
            )
            .await;
    }
    let csrf = other.get("/ui/login").await.csrf();
    let page = other
        .post(
            "/ui/login",
            &[("csrf", &csrf), ("user", "alice"), ("password", password)],
        )
        .await;
    assert_eq!(page.status, 401);
    assert!(
        page.body.contains("Wrong user name or password"),
        "{}",
        page.body
    );
    assert!(!other.cookies.contains_key("__Host-acmehub_session"));
    // Admins see that someone was locked out (recorded just after the answer).
    let mut listed = api.get("/api/v1/users").await;
    for _ in 0..50 {
        if listed.body[0]["locked_until"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        listed = api.get("/api/v1/users").await;
    }
    assert!(
        listed.body[0]["locked_until"].is_string(),
        "{}",
        listed.body
    );

    // Deleting the user ends its session.
    assert_eq!(api.delete("/api/v1/users/alice").await.status, 204);
    let page = b.get("/ui/i/default").await;
    assert_eq!((page.status, page.location.as_str()), (303, "/ui/login"));
    t.stop().await;
}

#[tokio::test]
async fn a_failed_order_is_told_in_plain_words_with_its_fix() {
    use instant_acme::{ChallengeType, Identifier, NewOrder, RetryPolicy};
    let t = TestHub::start(Db::Sqlite).await;
    let account = t.account().await;
    let identifiers = [Identifier::Dns("wrong.console.test".into())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .unwrap();
    t.dns.set_a(
        "wrong.console.test",
        &[std::net::Ipv4Addr::LOCALHOST.into()],
    );
    let http = Http01Responder::start(t.http01_port).await;
    let mut authorizations = order.authorizations();
    let mut authz = authorizations.next().await.unwrap().unwrap();
    let mut challenge = authz.challenge(ChallengeType::Http01).unwrap();
    http.set(&challenge.token, "not-the-key-authorization");
    let _ = challenge.set_ready().await;
    let retry = RetryPolicy::new().initial_delay(std::time::Duration::from_millis(50));
    assert!(order.poll_ready(&retry).await.is_err());

    let mut b = Browser::new(&t);
    b.sign_in(&t.admin_token()).await;
    let page = b.get("/ui/i/default/orders?status=invalid").await;
    assert!(page.body.contains("wrong.console.test"), "{}", page.body);
    assert!(page.body.contains("status-invalid"));
    assert!(
        page.body.contains("The host answered with something else"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Fix:</em> Check that the client serves"));
    assert!(
        !page.body.contains("not-the-key-authorization"),
        "the body is echoed"
    );
    // A filter the API refuses is said, not a blank page.
    let page = b.get("/ui/i/default/orders?status=lost").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("status must be"), "{}", page.body);
    t.stop().await;
}

#[tokio::test]
async fn a_delegation_shows_the_cname_to_create_and_its_live_status() {
    let t = crate::managed::hub_with_zone(Db::Sqlite).await;
    let mut b = Browser::new(&t);
    b.sign_in(&t.admin_token()).await;
    let csrf = b.get("/ui/i/default/dns").await.csrf();
    let page = b
        .post(
            "/ui/i/default/dns/delegations",
            &[("csrf", &csrf), ("domain", "shop.console.test")],
        )
        .await;
    assert_eq!(
        page.location, "/ui/i/default/dns?done=created",
        "{}",
        page.body
    );
    let api = Api::admin(&t);
    let d = api
        .get("/api/v1/instances/default/delegations/shop.console.test")
        .await;
    let (name, target) = (
        d.body["cname_name"].as_str().unwrap().to_string(),
        d.body["cname_target"].as_str().unwrap().to_string(),
    );
    let page = b.get("/ui/i/default/dns").await;
    let record = format!("{name}. CNAME {target}.");
    assert!(
        page.body.contains(&format!("data-copy=\"{record}\"")),
        "{}",
        page.body
    );
    let at = page.body.find("data-live-check=\"").unwrap() + "data-live-check=\"".len();
    let live = page.body[at..at + page.body[at..].find('"').unwrap()].to_string();

    let form = [("csrf", csrf.as_str()), ("live", "1")];
    let r = b.post(&live, &form).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["status"], "missing", "{v}");
    // The customer creates the record: the next look says so.
    t.dns.add_ns("console.test", "ns1.console.test");
    t.dns
        .set_a("ns1.console.test", &["127.0.0.1".parse().unwrap()]);
    t.dns.set_cname(&name, &target);
    let r = b.post(&live, &form).await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["status"], "ok", "{v}");
    // Checking stores its outcome: a read token may look, not check.
    let made = api
        .expect(
            201,
            "/api/v1/tokens",
            json!({"name": "looker", "scope": "instance:default", "role": "read"}),
        )
        .await;
    let reader = Api::new(&t, made["token"].as_str());
    let path = "/api/v1/instances/default/delegations/shop.console.test";
    assert_eq!(reader.get(path).await.body["status"], "ok");
    assert_eq!(
        reader
            .post(&format!("{path}/check"), json!({}))
            .await
            .status,
        403
    );
    t.stop().await;
}

#[tokio::test]
async fn tokens_and_users_are_made_and_revoked_on_the_access_page() {
    let t = TestHub::start(Db::Sqlite).await;
    let api = Api::admin(&t);
    let mut b = Browser::new(&t);
    b.sign_in(&t.admin_token()).await;
    let page = b.get("/ui/access").await;
    assert_eq!(page.status, 200);
    let csrf = page.csrf();
    let page = b
        .post(
            "/ui/access/tokens",
            &[
                ("csrf", &csrf),
                ("name", "monitor"),
                ("scope", "instance:default"),
                ("role", "read"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let token = page.element("new-token");
    let reader = Api::new(&t, Some(&token));
    assert_eq!(reader.get("/api/v1/instances/default").await.status, 200);
    assert_eq!(
        reader
            .post(
                "/api/v1/instances/default/access-keys",
                json!({"name": "x"})
            )
            .await
            .status,
        403,
        "the token is read-only"
    );
    // Shown once.
    assert!(!b.get("/ui/access").await.body.contains(&token));

    let password = "another long passphrase";
    let page = b
        .post(
            "/ui/access/users",
            &[
                ("csrf", &csrf),
                ("name", "bob"),
                ("password", "short"),
                ("scope", "admin"),
                ("role", "read"),
            ],
        )
        .await;
    assert!(page.body.contains("12 to 1024 characters"), "{}", page.body);
    assert!(
        !page.body.contains("value=\"short\""),
        "a refused password is echoed"
    );
    let page = b
        .post(
            "/ui/access/users",
            &[
                ("csrf", &csrf),
                ("name", "bob"),
                ("password", password),
                ("scope", "admin"),
                ("role", "read"),
            ],
        )
        .await;
    assert_eq!(page.location, "/ui/access?done=created", "{}", page.body);
    let page = b.get("/ui/access").await;
    assert!(page.body.contains(">bob<") && !page.body.contains(password));

    // An instance token may not see this page, and is not shown the link.
    let mut viewer = Browser::new(&t);
    viewer.sign_in(&token).await;
    let page = viewer.get("/ui/i/default").await;
    assert!(!page.body.contains("/ui/access"));
    assert_eq!(viewer.get("/ui/access").await.status, 403);

    let tokens = api.get("/api/v1/tokens").await;
    let id = tokens.body[0]["id"].as_str().unwrap().to_string();
    let page = b
        .post(
            &format!("/ui/access/tokens/{id}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.location, "/ui/access?done=revoked");
    assert_eq!(reader.get("/api/v1/instances/default").await.status, 401);
    t.stop().await;
}

#[tokio::test]
async fn an_instance_is_deleted_only_when_its_name_is_typed_and_it_is_empty() {
    let t = TestHub::start(Db::Sqlite).await;
    let api = Api::admin(&t);
    api.expect(201, "/api/v1/instances", json!({"name": "old"}))
        .await;
    let mut b = Browser::new(&t);
    b.sign_in(&t.admin_token()).await;
    let page = b.get("/ui/i/old").await;
    assert!(
        page.body.contains("no limit"),
        "rate limits of 0 read as none"
    );
    let csrf = page.csrf();
    let page = b
        .post("/ui/i/old/delete", &[("csrf", &csrf), ("confirm", "od")])
        .await;
    assert!(page.body.contains("type its name"), "{}", page.body);
    assert_eq!(api.get("/api/v1/instances/old").await.status, 200);
    // Not empty: the API's refusal, drawn on the page.
    api.expect(
        201,
        "/api/v1/instances/old/access-keys",
        json!({"name": "k", "allowed_identifiers": ["a.test"]}),
    )
    .await;
    let page = b
        .post("/ui/i/old/delete", &[("csrf", &csrf), ("confirm", "old")])
        .await;
    assert!(page.body.contains("role=\"alert\""), "{}", page.body);
    assert_eq!(api.get("/api/v1/instances/old").await.status, 200);
    api.expect(201, "/api/v1/instances", json!({"name": "empty"}))
        .await;
    let page = b
        .post(
            "/ui/i/empty/delete",
            &[("csrf", &csrf), ("confirm", "empty")],
        )
        .await;
    assert_eq!(page.location, "/ui/instances?done=deleted");
    assert_eq!(api.get("/api/v1/instances/empty").await.status, 404);
    t.stop().await;
}

/// A refused sign-in as a person sees it: the status and the words.
fn sign_in_refusal(page: &Page) -> (u16, String) {
    let text = page
        .body
        .split("role=\"alert\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_default()
        .to_string();
    (page.status, text)
}

async fn hub_with_user(name: &str, password: &str) -> TestHub {
    let t = TestHub::start(Db::Sqlite).await;
    let r = Api::admin(&t)
        .post(
            "/api/v1/users",
            json!({"name": name, "password": password, "scope": "instance:default", "role": "read"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    t
}

#[tokio::test]
async fn an_unknown_user_name_is_answered_as_a_known_one_with_a_wrong_password() {
    let password = "correct horse battery staple";
    let t = hub_with_user("alice", password).await;
    let mut b = Browser::new(&t);
    // Attempt after attempt, past the lock-out, nothing tells the names apart.
    for attempt in 1..=7 {
        let unknown = sign_in_refusal(&b.sign_in_as("mallory", "wrong password!!").await);
        let known = sign_in_refusal(&b.sign_in_as("alice", "wrong password!!").await);
        assert_eq!(unknown, known, "attempt {attempt}");
        assert_eq!(known.0, 401);
        assert!(!known.1.is_empty(), "attempt {attempt}: the page says why");
    }
    // Locked out, the right password is answered as a wrong one.
    let locked = sign_in_refusal(&b.sign_in_as("alice", password).await);
    let unknown = sign_in_refusal(&b.sign_in_as("mallory", password).await);
    assert_eq!(locked, unknown);
    assert!(!b.cookies.contains_key("__Host-acmehub_session"));
    t.stop().await;
}

#[tokio::test]
async fn a_user_locked_out_from_one_address_still_signs_in_from_another() {
    let password = "correct horse battery staple";
    let t = hub_with_user("alice", password).await;
    let mut stranger = Browser::at(&t, "127.0.0.2");
    for _ in 0..6 {
        let page = stranger.sign_in_as("alice", "guessing....").await;
        assert_eq!(page.status, 401);
    }
    // The stranger's address is locked out, even with the right password...
    let page = stranger.sign_in_as("alice", password).await;
    assert_eq!(page.status, 401, "{}", page.body);
    // ...and alice, elsewhere, is not.
    let mut alice = Browser::at(&t, "127.0.0.3");
    let page = alice.sign_in_as("alice", password).await;
    assert_eq!(
        (page.status, page.location.as_str()),
        (303, "/ui/i/default"),
        "{}",
        page.body
    );
    t.stop().await;
}

#[tokio::test]
async fn an_instance_token_in_the_console_cannot_widen_what_an_admin_set() {
    let t = TestHub::start(Db::Sqlite).await;
    let api = Api::admin(&t);
    api.expect(
        201,
        "/api/v1/instances",
        json!({"name": "alpha", "external_account_required": true, "allowed_challenges": ["dns-01"]}),
    )
    .await;
    let token = api
        .expect(
            201,
            "/api/v1/tokens",
            json!({"name": "alpha-rw", "scope": "instance:alpha", "role": "write"}),
        )
        .await;
    let mut b = Browser::new(&t);
    b.sign_in(token["token"].as_str().unwrap()).await;

    // The settings form without the EAB box ticked: refused, saying why.
    let csrf = b.get("/ui/i/alpha").await.csrf();
    let page = b
        .post(
            "/ui/i/alpha",
            &[
                ("csrf", &csrf),
                ("description", "opened up"),
                ("allowed_challenges", "dns-01"),
                ("failover", "on"),
            ],
        )
        .await;
    assert!(
        page.body.contains("needs a hub-wide token"),
        "{}",
        page.body
    );
    let alpha = api.get("/api/v1/instances/alpha").await.body;
    assert_eq!(
        (
            alpha["external_account_required"].clone(),
            alpha["description"].clone()
        ),
        (json!(true), json!(""))
    );
    // Saved as it is, the form is accepted.
    let page = b
        .post(
            "/ui/i/alpha",
            &[
                ("csrf", &csrf),
                ("description", "kept closed"),
                ("external_account_required", "on"),
                ("allowed_challenges", "dns-01"),
                ("failover", "on"),
            ],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);

    // A pre-authorized key is an admin's to make.
    let csrf = b.get("/ui/i/alpha/keys").await.csrf();
    let page = b
        .post(
            "/ui/i/alpha/keys",
            &[
                ("csrf", &csrf),
                ("name", "fleet"),
                ("allowed_identifiers", "*.corp.example.test"),
                ("validation", "pre-authorized"),
            ],
        )
        .await;
    assert!(
        page.body.contains("needs a hub-wide token"),
        "{}",
        page.body
    );
    let keys = api.get("/api/v1/instances/alpha/access-keys").await.body;
    assert_eq!(keys, json!([]));
    t.stop().await;
}
