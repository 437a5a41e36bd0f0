//! The targets: each takes bytes, runs the code the hub runs on that input,
//! and checks what must hold whatever the input (normalized identifiers stay
//! normalized, a DNS answer parses and echoes the id). A panic anywhere is a
//! crash; the returned string names the outcome for the engine's feedback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

use acmehub::admin::parse_json;
use acmehub::ca::{KeySummary, parse_csr};
use acmehub::config::{Config, FileConfig, Overrides};
use acmehub::dns::credentials::{CredentialSettings, ZoneSettings, parse_zone};
use acmehub::dns::delegations::DelegationSettings;
use acmehub::error::Error;
use acmehub::issuance::ca_accounts::CaAccountSettings;
use acmehub::jws::{AccountKey, ExternalAccountBinding, Jws, KeyRef, b64};
use acmehub::managed::ManagedSettings;
use acmehub::orders::parse_identifiers;
use acmehub::policy::AccessPolicy;
use acmehub::policy::Identifier;
use acmehub::tenancy::access_keys::{AccessKeySettings, check_access_key_rights};
use acmehub::tenancy::fields::{check_environment, check_name};
use acmehub::tenancy::instances::{InstanceSettings, validate_instance_name};
use acmehub::tenancy::users::NewUser;
use acmehub::zone::authoritative::AuthoritativeServer;
use hickory_proto::op::Message;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use super::engine::{JSON_TOKENS, Shape, Target};

pub const NAMES: &[&str] = &[
    "jws",
    "eab",
    "csr",
    "csr-info",
    "identifier",
    "dns",
    "admin",
    "config",
];

pub fn by_name(name: &str) -> Option<Target> {
    let target = match name {
        "jws" => Target {
            shape: Shape::Jws,
            max_len: 64 * 1024,
            dictionary: JSON_TOKENS,
            run: jws,
        },
        "eab" => Target {
            shape: Shape::Jws,
            max_len: 16 * 1024,
            dictionary: JSON_TOKENS,
            run: eab,
        },
        "csr" => Target {
            shape: Shape::Binary,
            max_len: 16 * 1024,
            dictionary: DER_TOKENS,
            run: csr,
        },
        "csr-info" => Target {
            shape: Shape::Binary,
            max_len: 16 * 1024,
            dictionary: DER_TOKENS,
            run: csr_info,
        },
        "identifier" => Target {
            shape: Shape::Text,
            max_len: 4 * 1024,
            dictionary: NAME_TOKENS,
            run: identifier,
        },
        "dns" => Target {
            shape: Shape::Dns,
            max_len: 4 * 1024,
            dictionary: DNS_TOKENS,
            run: dns,
        },
        "admin" => Target {
            shape: Shape::Json,
            max_len: 16 * 1024,
            dictionary: JSON_TOKENS,
            run: admin,
        },
        "config" => Target {
            shape: Shape::Text,
            max_len: 16 * 1024,
            dictionary: TOML_TOKENS,
            run: config,
        },
        _ => return None,
    };
    Some(target)
}

/// The account key that `kid` requests of the seeds are signed with
/// (P-256, PKCS#8, made with openssl for these tests only).
pub const ACCOUNT_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQguSnmhlFjfZmrJOp6ezEmD18rrS9B54TlFTqkMCXKx8OhRANCAAQkSGl8xvXld8AZK7tkF8Xt50l8H3rDufQxPXu32VAAyj7dxcILxOT5m+FzCu/aIJW4T/eyX+97EE4RwTprlHXr";

/// The newAccount URL the EAB seeds name.
pub const NEW_ACCOUNT_URL: &str = "https://acme.test/acme/default/new-account";

/// The MAC key of the EAB seeds.
pub const EAB_MAC_KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

pub fn account_key_pair() -> EcdsaKeyPair {
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(ACCOUNT_PKCS8)
        .expect("constant base64");
    EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &der,
        &ring::rand::SystemRandom::new(),
    )
    .expect("constant key")
}

/// The public JWK of [`account_key_pair`].
pub fn account_jwk() -> Value {
    let pair = account_key_pair();
    let point = pair.public_key().as_ref();
    json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
}

fn account_key() -> &'static AccountKey {
    static KEY: OnceLock<AccountKey> = OnceLock::new();
    KEY.get_or_init(|| AccountKey::from_jwk(&account_jwk()).expect("a valid JWK"))
}

/// An error as an outcome: its kind and the words of its detail, without
/// the quoted input or numbers, so that one rule is one outcome.
fn refused(e: &Error) -> String {
    format!("{:?}: {}", e.kind, words(&e.detail))
}

/// The first plain words of a message, which name the rule: quoted parts
/// (input echoed back) and any word with digits, dots or capitals dropped,
/// so that input does not leak into outcomes and swamp the corpus.
fn words(text: &str) -> String {
    let mut plain = String::new();
    let mut opener = None;
    let mut escaped = false;
    for c in text.chars() {
        match opener {
            Some(_) if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(open) if c == open => opener = None,
            Some(_) => {}
            None if c == '"' || c == '`' => opener = Some(c),
            None => plain.push(c),
        }
    }
    plain
        .split_whitespace()
        .filter(|w| w.len() <= 14 && w.bytes().all(|b| b.is_ascii_lowercase()))
        .take(8)
        .collect::<Vec<_>>()
        .join(" ")
}

fn jws(data: &[u8]) -> String {
    let jws = match Jws::parse(data) {
        Ok(jws) => jws,
        Err(e) => return refused(&e),
    };
    let verified = match &jws.key {
        KeyRef::Jwk(key) => jws.verify(key),
        KeyRef::Kid(_) => jws.verify(account_key()),
    };
    let payload = jws.payload_json::<Value>();
    // A newAccount carries its EAB inside the payload; check it as the
    // handler would.
    let eab = payload
        .as_ref()
        .ok()
        .and_then(|p| p.get("externalAccountBinding"))
        .map(|binding| match &jws.key {
            KeyRef::Jwk(key) => ExternalAccountBinding::parse(binding, key, &jws.url)
                .and_then(|b| b.verify(EAB_MAC_KEY))
                .map_err(|e| refused(&e)),
            KeyRef::Kid(_) => Err("kid".into()),
        });
    format!(
        "{} {} verified={} payload={} eab={eab:?}",
        jws.alg,
        matches!(jws.key, KeyRef::Jwk(_)),
        verified.map_err(|e| refused(&e)).is_ok(),
        payload.map_err(|e| refused(&e)).is_ok(),
    )
}

fn eab(data: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return "not json".into();
    };
    match ExternalAccountBinding::parse(&value, account_key(), NEW_ACCOUNT_URL) {
        Ok(binding) => match binding.verify(EAB_MAC_KEY) {
            Ok(()) => format!("valid {}", binding.kid.len()),
            Err(e) => refused(&e),
        },
        Err(e) => refused(&e),
    }
}

fn csr(data: &[u8]) -> String {
    match parse_csr(data) {
        Ok(csr) => {
            // The key the certificate will carry must classify the same
            // way again (the CA re-reads it at signing).
            let again = KeySummary::from_spki_der(&csr.spki_der).expect("a CSR key re-parses");
            assert_eq!(again.to_string(), csr.key.to_string());
            for id in &csr.identifiers {
                assert_normalized(id);
            }
            format!("ok {} {}", csr.key, csr.identifiers.len().min(3))
        }
        Err(e) => refused(&e),
    }
}

/// A CSR whose CertificationRequestInfo is the input, signed with the
/// account key: mutations of a CSR's names and attributes reach the checks
/// behind its self-signature (SANs, common names, extensions), which
/// [`csr`] mutants rarely pass.
fn csr_info(data: &[u8]) -> String {
    let pair = account_key_pair_asn1();
    let rng = ring::rand::SystemRandom::new();
    let Ok(signature) = pair.sign(&rng, data) else {
        return "unsignable".into();
    };
    // ecdsa-with-SHA256 (RFC 5758 §3.2), parameters absent.
    let algorithm = der(0x30, b"\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02");
    let mut bits = vec![0];
    bits.extend_from_slice(signature.as_ref());
    let mut body = data.to_vec();
    body.extend(algorithm);
    body.extend(der(0x03, &bits));
    csr(&der(0x30, &body))
}

/// One DER TLV.
pub fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else if len < 0x1_0000 {
        out.push(0x82);
        out.extend((len as u16).to_be_bytes());
    } else {
        out.push(0x83);
        out.extend(&(len as u32).to_be_bytes()[1..]);
    }
    out.extend_from_slice(content);
    out
}

/// The account key in the form CSR signatures use (ASN.1 DER).
pub fn account_key_pair_asn1() -> &'static EcdsaKeyPair {
    static PAIR: OnceLock<EcdsaKeyPair> = OnceLock::new();
    PAIR.get_or_init(|| {
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(ACCOUNT_PKCS8)
            .expect("constant base64");
        EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &der,
            &ring::rand::SystemRandom::new(),
        )
        .expect("constant key")
    })
}

/// A parsed identifier is its own normal form: parsing its value again
/// gives it back (the store, policies and CSR checks compare values).
fn assert_normalized(id: &Identifier) {
    let again = Identifier::parse(id.kind.as_str(), &id.value)
        .unwrap_or_else(|e| panic!("{id:?} does not parse again: {}", e.detail));
    assert_eq!(&again, id, "normalizing is not idempotent");
    assert!(id.value.is_ascii(), "{id:?} is not ASCII");
    assert!(
        !id.value.bytes().any(|b| b.is_ascii_uppercase()),
        "{id:?} has upper case"
    );
}

fn identifier(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    // The newOrder form: a JSON list of {"type", "value"}.
    if let Ok(list) = serde_json::from_str::<Vec<(String, String)>>(&text).or_else(|_| {
        serde_json::from_str::<Vec<Value>>(&text).map(|items| {
            items
                .iter()
                .map(|i| {
                    let field =
                        |n: &str| i.get(n).and_then(Value::as_str).unwrap_or("").to_string();
                    (field("type"), field("value"))
                })
                .collect()
        })
    }) {
        return match parse_identifiers(&list) {
            Ok(ids) => {
                ids.iter().for_each(assert_normalized);
                format!("order {}", ids.len().min(3))
            }
            Err(e) => refused(&e),
        };
    }
    let mut outcome = String::new();
    for parsed in [Identifier::dns(&text), Identifier::ip(&text)] {
        match parsed {
            Ok(id) => {
                assert_normalized(&id);
                outcome.push_str(&format!("{:?} ", id.kind));
            }
            Err(e) => outcome.push_str(&refused(&e)),
        }
    }
    // Zones and delegations go through IDNA (Unicode names are accepted there).
    match parse_zone(&text, "zone") {
        Ok(zone) => {
            let id = Identifier::dns(&zone).expect("a zone is a DNS name");
            assert_normalized(&id);
            assert_eq!(
                parse_zone(&zone, "zone").ok().as_ref(),
                Some(&zone),
                "IDNA is not idempotent"
            );
            outcome.push_str(" zone");
        }
        Err(e) => outcome.push_str(&refused(&e)),
    }
    match AccessPolicy::parse_patterns(&[text.to_string()]) {
        Ok(patterns) => {
            // A stored pattern is read back from its text form.
            let stored: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
            let again = AccessPolicy::parse_patterns(&stored).expect("a stored pattern re-parses");
            assert_eq!(
                again.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                stored
            );
            outcome.push_str(" pattern");
        }
        Err(why) => outcome.push_str(&words(&why)),
    }
    outcome
}

/// The server the DNS target asks: a technical zone with the records the
/// hub publishes (SOA, NS, TXT, CNAME chains, CAA, addresses).
pub fn dns_server() -> &'static AuthoritativeServer {
    static SERVER: OnceLock<(tokio::runtime::Runtime, AuthoritativeServer)> = OnceLock::new();
    let (_, server) = SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let server = runtime
            .block_on(AuthoritativeServer::start(loopback))
            .expect("a loopback DNS socket");
        let zone = "acme.hub.example";
        server.set_soa(zone, "ns1.hub.example", "hostmaster.hub.example", 60);
        server.add_ns(zone, "ns1.hub.example");
        server.add_txt(
            &format!("k3v9.{zone}"),
            "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0",
        );
        server.add_txt(&format!("k3v9.{zone}"), &"x".repeat(600));
        for i in 0..40 {
            server.add_txt(
                &format!("big.{zone}"),
                &format!("{i:02}{}", "y".repeat(200)),
            );
        }
        server.set_cname(
            &format!("_acme-challenge.shop.{zone}"),
            &format!("k3v9.{zone}"),
        );
        server.set_cname(&format!("loop1.{zone}"), &format!("loop2.{zone}"));
        server.set_cname(&format!("loop2.{zone}"), &format!("loop1.{zone}"));
        server.set_cname(&format!("out.{zone}"), "elsewhere.example");
        server.add_caa(zone, 0, "issue", "acmehub.local");
        server.set_a(
            &format!("ns1.{zone}"),
            &[
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53)),
                "2001:db8::53".parse().expect("constant"),
            ],
        );
        (runtime, server)
    });
    server
}

fn dns(data: &[u8]) -> String {
    let server = dns_server();
    let request = Message::from_vec(data).ok();
    let mut outcome = String::new();
    for tcp in [false, true] {
        let Some(answer) = server.answer_bytes(data, tcp) else {
            outcome.push_str("silent ");
            continue;
        };
        // Whatever was asked, the answer is a DNS message for the asker:
        // it parses, echoes the id and fits the transport.
        let response =
            Message::from_vec(&answer).unwrap_or_else(|e| panic!("the answer does not parse: {e}"));
        let id = u16::from_be_bytes([data[0], data[1]]);
        assert_eq!(response.metadata.id, id, "the answer does not echo the id");
        let limit = match (&request, tcp) {
            (_, true) => usize::from(u16::MAX),
            (Some(r), false) => r
                .edns
                .as_ref()
                .map_or(512, |e| usize::from(e.max_payload().max(512))),
            (None, false) => 512,
        };
        assert!(
            answer.len() <= limit,
            "{} bytes over a limit of {limit}",
            answer.len()
        );
        outcome.push_str(&format!(
            "{:?} {} {} ",
            response.metadata.response_code,
            response.answers.len().min(3),
            response.metadata.truncation
        ));
    }
    outcome
}

fn admin(data: &[u8]) -> String {
    let mut outcome = String::new();
    let mut note = |what: &str, result: Result<(), Error>| {
        outcome.push_str(what);
        outcome.push_str(&match result {
            Ok(()) => " ok; ".into(),
            Err(e) => {
                // A field path of the rule, not one a body made up.
                let field = e.field.clone().filter(|f| {
                    f.len() <= 24 && f.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                });
                format!(" {} {field:?}; ", refused(&e))
            }
        });
    };
    note(
        "instance",
        parse_json::<InstanceSettings>(data).and_then(|s| {
            if let Some(name) = &s.name {
                validate_instance_name(name)?;
            }
            if let Some(env) = &s.environment {
                check_environment(env, "environment")?;
            }
            Ok(())
        }),
    );
    note(
        "access-key",
        parse_json::<AccessKeySettings>(data).and_then(|s| {
            if let Some(name) = &s.name {
                check_name("access key", name)?;
            }
            if let Some(patterns) = &s.allowed_identifiers {
                AccessPolicy::parse_patterns(patterns)
                    .map_err(|why| Error::invalid("allowed_identifiers", why))?;
            }
            if let Some(Some(at)) = &s.expires_at {
                acmehub::util::parse_rfc3339(at)
                    .ok_or_else(|| Error::invalid("expires_at", "not RFC 3339"))?;
            }
            check_access_key_rights(&s, None, false)
        }),
    );
    note(
        "credential",
        parse_json::<CredentialSettings>(data).and_then(|s| {
            if let Some(name) = &s.name {
                check_name("credential", name)?;
            }
            if let Some(kind) = s.kind.as_deref() {
                let kind = acmehub::dns::providers::kind(kind)
                    .ok_or_else(|| Error::invalid("kind", "unknown"))?;
                let config = s.config.clone().unwrap_or_else(|| json!({}));
                let secret = s.secret.clone().unwrap_or_else(|| json!({}));
                acmehub::dns::providers::validate(kind, &config, &secret)
                    .map_err(|(field, why)| Error::invalid(field, why))?;
            }
            Ok(())
        }),
    );
    note(
        "zone",
        parse_json::<ZoneSettings>(data).and_then(|s| {
            parse_zone(&s.zone, "zone")?;
            check_name("credential", &s.credential)
        }),
    );
    note(
        "delegation",
        parse_json::<DelegationSettings>(data)
            .and_then(|s| parse_zone(&s.domain, "domain").map(drop)),
    );
    note(
        "ca-account",
        parse_json::<CaAccountSettings>(data).map(drop),
    );
    note("managed", parse_json::<ManagedSettings>(data).map(drop));
    note(
        "channel",
        parse_json::<acmehub::notify::ChannelSettings>(data).map(drop),
    );
    note(
        "user",
        parse_json::<NewUser>(data).and_then(|u| check_name("user", &u.name)),
    );
    outcome
}

fn config(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let file: FileConfig = match toml::from_str(&text) {
        Ok(file) => file,
        Err(e) => return format!("toml {}", words(e.message())),
    };
    match Config::resolve(file, Overrides::default()) {
        Ok(config) => {
            let resolvers = config.validation.resolver_addrs().map(|a| a.len().min(3));
            format!(
                "ok {:?} {}",
                resolvers.is_ok(),
                config.public_host().is_some()
            )
        }
        Err(e) => format!("resolve {}", words(&e.to_string())),
    }
}

const DER_TOKENS: &[&[u8]] = &[
    b"\x30\x82\x01\x00",
    b"\x30\x80",
    b"\x02\x01\x00",
    b"\x05\x00",
    b"\x06\x03\x55\x1d\x11",
    b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x09\x0e",
    b"\x82\x0bexample.com",
    b"\x87\x04\x7f\x00\x00\x01",
    b"\x06\x03\x55\x04\x03",
    b"\x0c\x0bexample.com",
    b"\x01\x01\xff",
    b"\x03\x02\x00",
];

const NAME_TOKENS: &[&[u8]] = &[
    ".".as_bytes(),
    "*.".as_bytes(),
    "xn--".as_bytes(),
    "-".as_bytes(),
    "..".as_bytes(),
    "::".as_bytes(),
    ":".as_bytes(),
    "/".as_bytes(),
    "/8".as_bytes(),
    "/128".as_bytes(),
    "%eth0".as_bytes(),
    "ß".as_bytes(),
    "İ".as_bytes(),
    "\u{200d}".as_bytes(),
    "\u{fe0f}".as_bytes(),
    "例え".as_bytes(),
    "テスト".as_bytes(),
    "ＡＢＣ".as_bytes(),
    "。".as_bytes(),
    "\u{0301}".as_bytes(),
    "255.255.255.255".as_bytes(),
    "::ffff:".as_bytes(),
    "0x7f.1".as_bytes(),
    "0177.0.0.1".as_bytes(),
    "[\"dns\",\"a.example\"]".as_bytes(),
    "{\"type\":\"ip\",\"value\":\"::1\"}".as_bytes(),
];

const DNS_TOKENS: &[&[u8]] = &[
    b"\x00\x10\x00\x01",
    b"\x00\x01\x00\x01",
    b"\x01\x01\x00\x01",
    b"\x00\xff\x00\x01",
    b"\x00\x29\x10\x00",
    b"\xc0\x0c",
    b"\xc0\x00",
    b"\x3f",
    b"\x00\x00\x29\xff\xff\x00\x00\x00\x00\x00\x00",
    b"\x04acme\x03hub\x07example\x00",
];

const TOML_TOKENS: &[&[u8]] = &[
    "[validation]\n".as_bytes(),
    "[dns]\n".as_bytes(),
    "[dns.technical_zone]\n".as_bytes(),
    "[acme]\n".as_bytes(),
    "[ca]\n".as_bytes(),
    "[[ca.profiles]]\n".as_bytes(),
    " = ".as_bytes(),
    "\"".as_bytes(),
    "'''".as_bytes(),
    "\"\"\"".as_bytes(),
    "[".as_bytes(),
    "]".as_bytes(),
    "{".as_bytes(),
    "}".as_bytes(),
    ",".as_bytes(),
    "\n".as_bytes(),
    "#".as_bytes(),
    "1e999".as_bytes(),
    "-1".as_bytes(),
    "18446744073709551616".as_bytes(),
    "0x10".as_bytes(),
    "inf".as_bytes(),
    "nan".as_bytes(),
    "true".as_bytes(),
    "1979-05-27T07:32:00Z".as_bytes(),
    "\"::1\"".as_bytes(),
    "\"0.0.0.0:0\"".as_bytes(),
    "\"[::1]:53\"".as_bytes(),
    "\"https://\"".as_bytes(),
];
