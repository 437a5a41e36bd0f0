//! Writes the seed corpus (`fuzz/corpus/<target>/`) from real requests:
//! JWS requests as ACME clients sign them (newAccount with and without EAB,
//! newOrder, finalize with an rcgen CSR, POST-as-GET, keyChange, revokeCert),
//! CSRs with P-256, P-384 and RSA keys, DNS queries built with hickory-proto,
//! the admin API bodies of tests/it/admin.rs and the config files of the
//! README and conformance/. Run it again after changing what the hub
//! accepts: `cargo test --test it fuzz::seeds -- --ignored`.

use std::path::Path;

use acmehub::jws::b64;
use base64::Engine as _;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};

use super::targets::{ACCOUNT_PKCS8, EAB_MAC_KEY, NEW_ACCOUNT_URL, account_jwk, account_key_pair};

/// A 2048-bit RSA key made with openssl for these seeds only (PKCS#8 DER).
const RSA_PKCS8: &str = include_str!("rsa-seed-key.b64");

const BASE: &str = "https://acme.test/acme/default";

enum Signer {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl Signer {
    fn alg(&self) -> &'static str {
        match self {
            Signer::Ec(_) => "ES256",
            Signer::Rsa(_) => "RS256",
        }
    }

    fn jwk(&self) -> Value {
        match self {
            Signer::Ec(_) => account_jwk(),
            Signer::Rsa(pair) => {
                let public = pair.public().as_ref();
                // ring gives the RSAPublicKey DER; the JWK wants n and e.
                let (n, e) = rsa_components(public);
                json!({"kty": "RSA", "n": b64(n), "e": b64(e)})
            }
        }
    }

    fn sign(&self, data: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Signer::Ec(pair) => pair.sign(&rng, data).expect("signing").as_ref().to_vec(),
            Signer::Rsa(pair) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, data, &mut out)
                    .expect("signing");
                out
            }
        }
    }

    /// A flattened JWS over `payload` (empty for POST-as-GET).
    fn jws(&self, mut header: Value, payload: &[u8]) -> Value {
        header["alg"] = json!(self.alg());
        let protected = b64(header.to_string().as_bytes());
        let payload = b64(payload);
        let signature = b64(&self.sign(format!("{protected}.{payload}").as_bytes()));
        json!({"protected": protected, "payload": payload, "signature": signature})
    }
}

/// n and e of a DER RSAPublicKey (SEQUENCE of two INTEGERs), leading zero dropped.
fn rsa_components(der: &[u8]) -> (&[u8], &[u8]) {
    fn read(der: &[u8]) -> (&[u8], &[u8]) {
        let (len, at) = match der[1] {
            l if l < 0x80 => (usize::from(l), 2),
            0x81 => (usize::from(der[2]), 3),
            _ => (usize::from(u16::from_be_bytes([der[2], der[3]])), 4),
        };
        (&der[at..at + len], &der[at + len..])
    }
    let (body, _) = read(der);
    let (n, rest) = read(body);
    let (e, _) = read(rest);
    let n = n.strip_prefix(&[0]).unwrap_or(n);
    (n, e)
}

fn rsa_der() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(RSA_PKCS8.split_whitespace().collect::<String>())
        .expect("constant base64")
}

fn eab(kid: &str, alg: &str, mac: &'static hmac::Algorithm, url: &str) -> Value {
    let protected = b64(json!({"alg": alg, "kid": kid, "url": url})
        .to_string()
        .as_bytes());
    let payload = b64(account_jwk().to_string().as_bytes());
    let key = hmac::Key::new(*mac, EAB_MAC_KEY);
    let tag = hmac::sign(&key, format!("{protected}.{payload}").as_bytes());
    json!({"protected": protected, "payload": payload, "signature": b64(tag.as_ref())})
}

fn csrs() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases: Vec<(&str, rcgen::KeyPair, Vec<String>)> = vec![
        (
            "p256",
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key"),
            names(&["a.example.com", "*.example.com"]),
        ),
        (
            "p384",
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key"),
            names(&["xn--bcher-kva.example", "192.0.2.7", "2001:db8::7"]),
        ),
        (
            "rsa",
            rcgen::KeyPair::try_from(rsa_der().as_slice()).expect("RSA key"),
            names(&["www.example.org"]),
        ),
        (
            "ed25519",
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key"),
            names(&["ed.example.net"]),
        ),
    ];
    for (name, key, sans) in cases {
        let mut params = rcgen::CertificateParams::new(sans.clone()).expect("names");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, sans[0].clone());
        let der = params
            .serialize_request(&key)
            .expect("a CSR")
            .der()
            .to_vec();
        out.push((format!("{name}.der"), der));
    }
    // The CSRs the unit tests of src/ca/csr.rs keep.
    for name in ["p384", "p521", "rsa1024", "rsa2048-sha1", "rsa2048"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/ca/testdata")
            .join(format!("{name}.der"));
        out.push((
            format!("testdata-{name}.der"),
            std::fs::read(path).expect("testdata"),
        ));
    }
    out
}

/// CertificationRequestInfos of CSRs made with the account key, for the
/// csr-info target (which signs them again after each mutation).
fn csr_infos() -> Vec<(String, Vec<u8>)> {
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(ACCOUNT_PKCS8)
        .expect("constant base64");
    let key = rcgen::KeyPair::try_from(der.as_slice()).expect("P-256 key");
    let many: Vec<String> = (0..12).map(|i| format!("host{i}.example.com")).collect();
    let cases: Vec<(&str, Vec<String>, Option<&str>)> = vec![
        (
            "dns",
            vec!["a.example.com".into(), "*.example.com".into()],
            Some("a.example.com"),
        ),
        (
            "ip",
            vec!["192.0.2.7".into(), "2001:db8::7".into()],
            Some("192.0.2.7"),
        ),
        (
            "cn-mismatch",
            vec!["a.example.com".into()],
            Some("b.example.com"),
        ),
        ("no-cn", vec!["xn--bcher-kva.example".into()], None),
        ("many", many, None),
    ];
    let mut out = Vec::new();
    for (name, sans, cn) in cases {
        let mut params = rcgen::CertificateParams::new(sans).expect("names");
        // rcgen names a subject by default; these name theirs or none.
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        let csr = params
            .serialize_request(&key)
            .expect("a CSR")
            .der()
            .to_vec();
        out.push((format!("{name}.der"), first_element(&csr).to_vec()));
    }
    out
}

/// The first element inside a DER SEQUENCE (a CSR's CertificationRequestInfo).
fn first_element(der: &[u8]) -> &[u8] {
    fn header(der: &[u8]) -> (usize, usize) {
        match der[1] {
            l if l < 0x80 => (2, usize::from(l)),
            0x81 => (3, usize::from(der[2])),
            _ => (4, usize::from(u16::from_be_bytes([der[2], der[3]]))),
        }
    }
    let (outer, _) = header(der);
    let inner = &der[outer..];
    let (at, len) = header(inner);
    &inner[..at + len]
}

fn dns_queries() -> Vec<(String, Vec<u8>)> {
    let zone = "acme.hub.example.";
    let cases: &[(&str, &str, RecordType, bool)] = &[
        ("txt", "k3v9.acme.hub.example.", RecordType::TXT, false),
        ("txt-edns", "k3v9.acme.hub.example.", RecordType::TXT, true),
        ("txt-big", "big.acme.hub.example.", RecordType::TXT, false),
        (
            "cname",
            "_acme-challenge.shop.acme.hub.example.",
            RecordType::TXT,
            true,
        ),
        ("loop", "loop1.acme.hub.example.", RecordType::A, false),
        ("out", "out.acme.hub.example.", RecordType::TXT, false),
        ("soa", zone, RecordType::SOA, false),
        ("ns", zone, RecordType::NS, true),
        ("caa", zone, RecordType::CAA, false),
        ("a", "ns1.acme.hub.example.", RecordType::A, false),
        ("aaaa", "ns1.acme.hub.example.", RecordType::AAAA, false),
        ("any", zone, RecordType::ANY, false),
        ("nxdomain", "nope.acme.hub.example.", RecordType::TXT, false),
        ("elsewhere", "example.org.", RecordType::A, false),
    ];
    let mut out = Vec::new();
    for (i, (label, name, kind, edns)) in cases.iter().enumerate() {
        let mut message = Message::query();
        message.metadata.id = 0x1000 + i as u16;
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).expect("a name"), *kind));
        if *edns {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            message.set_edns(e);
        }
        out.push((format!("{label}.bin"), message.to_vec().expect("encodes")));
    }
    // A NOTIFY, a response sent to us, and a query with two questions.
    let mut notify = Message::query();
    notify.metadata.op_code = OpCode::Notify;
    notify.add_query(Query::query(
        Name::from_ascii(zone).expect("a name"),
        RecordType::SOA,
    ));
    out.push(("notify.bin".into(), notify.to_vec().expect("encodes")));
    let mut response = Message::query();
    response.metadata.message_type = MessageType::Response;
    response.add_query(Query::query(
        Name::from_ascii(zone).expect("a name"),
        RecordType::A,
    ));
    out.push(("response.bin".into(), response.to_vec().expect("encodes")));
    let mut two = Message::query();
    two.add_query(Query::query(
        Name::from_ascii(zone).expect("a name"),
        RecordType::A,
    ));
    two.add_query(Query::query(
        Name::from_ascii(zone).expect("a name"),
        RecordType::TXT,
    ));
    out.push(("two-questions.bin".into(), two.to_vec().expect("encodes")));
    out
}

fn admin_bodies() -> Vec<Value> {
    vec![
        json!({"name": "team-a", "description": "Team A", "issuer": "local",
               "allowed_challenges": ["dns-01", "http-01"], "environment": "staging"}),
        json!({"name": "corp", "external_account_required": true, "cert_validity_days": 30,
               "rate_limits": {"orders_per_hour": 2}, "failover": false}),
        json!({"description": "Team A, prod", "cert_validity_days": null}),
        json!({"name": "fleet", "allowed_identifiers": ["*.corp.test", "10.0.0.0/8", "api.example.org"],
               "validation": "pre-authorized", "allow_wildcard": true,
               "expires_at": "2030-01-01T00:00:00Z"}),
        json!({"status": "disabled"}),
        json!({"name": "bind-main", "kind": "rfc2136",
               "config": {"server": "192.0.2.53:53", "key_name": "hub-key", "algorithm": "hmac-sha256"},
               "secret": {"key": "c2VjcmV0c2VjcmV0c2VjcmV0"}}),
        json!({"name": "cf-main", "kind": "cloudflare", "config": {}, "secret": {"api_token": "tok"}}),
        json!({"zone": "customer.com", "credential": "bind-main"}),
        json!({"zone": "bücher.example", "credential": "cf-main", "provider": "cloudflare"}),
        json!({"domain": "shop.customer.com"}),
        json!({"name": "le", "ca": "letsencrypt-staging", "email": "ops@example.com",
               "allow_wildcard": true, "priority": 1, "preferred": true}),
        json!({"name": "web", "identifiers": ["www.example.com", "192.0.2.1"], "key_type": "ec-p256",
               "auto_renew": true, "renew_before_days": 30, "tags": ["prod"]}),
        json!({"name": "hook", "kind": "webhook", "url": "https://hooks.example/x", "secret": "s"}),
        json!({"name": "alice", "password": "correct horse battery", "scope": "admin", "role": "read"}),
        json!({"reason": 4}),
    ]
}

const CONFIGS: &[(&str, &str)] = &[
    ("empty.toml", ""),
    (
        "readme-full.toml",
        r#"listen = "127.0.0.1:8443"
data_dir = "/var/lib/acmehub"
database_url = "postgres://acmehub@db/acmehub"
public_url = "https://acme.example.com"
log_format = "json"
trusted_proxies = ["10.0.0.0/8"]

[validation]
resolvers = ["10.0.0.53", "10.0.0.54:5353"]
http01_port = 80
tlsalpn01_port = 443
allow_private_targets = true
attempt_timeout_secs = 10
attempts = 3
retry_delay_ms = 1000
caa_identities = ["acmehub.local"]
answer_within_ms = 1000

[acme]
terms_of_service = "https://example.com/tos"
website = "https://example.com"
nonce_lifetime_secs = 3600
order_lifetime_secs = 604800
authz_valid_secs = 2592000
max_body_bytes = 65536

[ca]
leaf_validity_days = 90
"#,
    ),
    (
        "readme-dns.toml",
        r#"master_key_file = "/etc/acmehub/master-key"

[dns]
propagation_timeout_secs = 120
record_ttl = 60
provider_timeout_secs = 30
authoritative_port = 53

[dns.technical_zone]
name = "acme.hub.example"
listen = "0.0.0.0:53"
nameservers = ["ns1.hub.example"]
ttl = 60
"#,
    ),
    (
        "conformance.toml",
        r#"listen = "127.0.0.1:14000"
public_url = "https://127.0.0.1:14000"

[validation]
resolvers = ["127.0.0.1:8053"]
http01_port = 5002
tlsalpn01_port = 5001
"#,
    ),
];

/// Regenerates the seed corpus. Ignored: the corpus is committed, and
/// regenerating it changes every signature.
#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn seeds() {
    let root = super::fuzz_dir().join("corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(name), bytes).expect("seed written");
    };

    let ec = Signer::Ec(account_key_pair());
    let rsa = Signer::Rsa(RsaKeyPair::from_pkcs8(&rsa_der()).expect("RSA key"));
    let kid = format!("{BASE}/acct/0f1e2d");
    let nonce = "aGVsbG8tbm9uY2U";
    let binding = eab("kid-1", "HS256", &hmac::HMAC_SHA256, NEW_ACCOUNT_URL);
    let csr = csrs();

    let requests: Vec<(&str, Value)> = vec![
        (
            "new-account",
            ec.jws(
                json!({"nonce": nonce, "url": NEW_ACCOUNT_URL, "jwk": ec.jwk()}),
                json!({"termsOfServiceAgreed": true, "contact": ["mailto:ops@example.com"]})
                    .to_string()
                    .as_bytes(),
            ),
        ),
        (
            "new-account-eab",
            ec.jws(
                json!({"nonce": nonce, "url": NEW_ACCOUNT_URL, "jwk": ec.jwk()}),
                json!({"termsOfServiceAgreed": true, "externalAccountBinding": binding})
                    .to_string()
                    .as_bytes(),
            ),
        ),
        (
            "new-account-rsa",
            rsa.jws(
                json!({"nonce": nonce, "url": NEW_ACCOUNT_URL, "jwk": rsa.jwk()}),
                json!({"onlyReturnExisting": true}).to_string().as_bytes(),
            ),
        ),
        (
            "new-order",
            ec.jws(
                json!({"nonce": nonce, "url": format!("{BASE}/new-order"), "kid": kid}),
                json!({"identifiers": [
                    {"type": "dns", "value": "a.example.com"},
                    {"type": "dns", "value": "*.example.com"},
                    {"type": "ip", "value": "192.0.2.7"}]})
                .to_string()
                .as_bytes(),
            ),
        ),
        (
            "finalize",
            ec.jws(
                json!({"nonce": nonce, "url": format!("{BASE}/order/9/finalize"), "kid": kid}),
                json!({"csr": b64(&csr[0].1)}).to_string().as_bytes(),
            ),
        ),
        (
            "post-as-get",
            ec.jws(
                json!({"nonce": nonce, "url": format!("{BASE}/authz/3"), "kid": kid}),
                b"",
            ),
        ),
        (
            "challenge",
            ec.jws(
                json!({"nonce": nonce, "url": format!("{BASE}/chall/3/dns-01"), "kid": kid}),
                b"{}",
            ),
        ),
        (
            "key-change",
            ec.jws(
                json!({"nonce": nonce, "url": format!("{BASE}/key-change"), "kid": kid}),
                rsa.jws(
                    json!({"url": format!("{BASE}/key-change"), "jwk": rsa.jwk()}),
                    json!({"account": kid, "oldKey": ec.jwk()})
                        .to_string()
                        .as_bytes(),
                )
                .to_string()
                .as_bytes(),
            ),
        ),
        (
            "revoke-cert",
            ec.jws(
                json!({"nonce": nonce, "url": format!("{BASE}/revoke-cert"), "jwk": ec.jwk()}),
                json!({"certificate": b64(&csr[1].1), "reason": 4})
                    .to_string()
                    .as_bytes(),
            ),
        ),
    ];
    for (name, body) in requests {
        write("jws", &format!("{name}.json"), body.to_string().as_bytes());
    }

    write("eab", "hs256.json", binding.to_string().as_bytes());
    write(
        "eab",
        "hs384.json",
        eab("kid-2", "HS384", &hmac::HMAC_SHA384, NEW_ACCOUNT_URL)
            .to_string()
            .as_bytes(),
    );
    write(
        "eab",
        "hs512.json",
        eab("kid-3", "HS512", &hmac::HMAC_SHA512, NEW_ACCOUNT_URL)
            .to_string()
            .as_bytes(),
    );

    for (name, der) in &csr {
        write("csr", name, der);
    }
    for (name, der) in csr_infos() {
        write("csr-info", &name, &der);
    }

    for (i, text) in [
        "example.com",
        "*.example.com",
        "WWW.Example.COM.",
        "xn--bcher-kva.example",
        "bücher.example",
        "例え.テスト",
        "192.0.2.1",
        "2001:db8::1",
        "::ffff:10.0.0.1",
        "10.0.0.0/8",
        "2001:db8::/32",
        r#"[{"type":"dns","value":"a.example.com"},{"type":"ip","value":"::1"},{"type":"dns","value":"*.b.example"}]"#,
    ]
    .iter()
    .enumerate()
    {
        write("identifier", &format!("{i:02}.txt"), text.as_bytes());
    }

    for (name, bytes) in dns_queries() {
        write("dns", &name, &bytes);
    }

    for (i, body) in admin_bodies().iter().enumerate() {
        write(
            "admin",
            &format!("{i:02}.json"),
            body.to_string().as_bytes(),
        );
    }

    for (name, text) in CONFIGS {
        write("config", name, text.as_bytes());
    }
}
