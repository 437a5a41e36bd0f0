//! A deliberately low-level ACME client for negative tests: it builds each
//! JWS by hand (ES256 with ring) so a test can break exactly one rule.

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::harness::TestHub;

pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

pub struct RawKey {
    pub pair: EcdsaKeyPair,
    pub pkcs8: Vec<u8>,
}

impl RawKey {
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Self {
            pair: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .unwrap(),
            pkcs8: pkcs8.as_ref().to_vec(),
        }
    }

    pub fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
    }

    /// RFC 7638 thumbprint.
    pub fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
    }

    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&SystemRandom::new(), data)
            .unwrap()
            .as_ref()
            .to_vec()
    }
}

/// A flattened JWS from a protected header and payload text, signed by `key`.
pub fn jws(key: &RawKey, protected: &Value, payload: &str) -> Value {
    let protected = b64(protected.to_string().as_bytes());
    let payload = b64(payload.as_bytes());
    let signature = b64(&key.sign(format!("{protected}.{payload}").as_bytes()));
    json!({"protected": protected, "payload": payload, "signature": signature})
}

pub struct Raw<'a> {
    pub t: &'a TestHub,
    pub http: reqwest::Client,
    pub key: RawKey,
    pub kid: Option<String>,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn problem_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }
}

impl<'a> Raw<'a> {
    pub fn new(t: &'a TestHub) -> Self {
        Self {
            t,
            http: t.http(),
            key: RawKey::generate(),
            kid: None,
        }
    }

    pub async fn nonce(&self) -> String {
        let r = self
            .http
            .head(self.t.url("/acme/default/new-nonce"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.headers()["replay-nonce"].to_str().unwrap().to_string()
    }

    /// Sends a body as-is with the ACME content type.
    pub async fn send(&self, url: &str, body: String) -> Reply {
        self.send_typed(url, body, "application/jose+json").await
    }

    pub async fn send_typed(&self, url: &str, body: String, content_type: &str) -> Reply {
        let r = self
            .http
            .post(url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// The protected header this client would normally send to `url`.
    pub async fn header(&self, url: &str) -> Value {
        let mut h = json!({"alg": "ES256", "nonce": self.nonce().await, "url": url});
        match &self.kid {
            Some(kid) => h["kid"] = json!(kid),
            None => h["jwk"] = self.key.jwk(),
        }
        h
    }

    /// A correct request.
    pub async fn post(&self, url: &str, payload: &str) -> Reply {
        let header = self.header(url).await;
        self.send(url, jws(&self.key, &header, payload).to_string())
            .await
    }

    /// Registers an account and remembers its kid.
    pub async fn register(&mut self) -> Reply {
        let url = self.t.url("/acme/default/new-account");
        let reply = self.post(&url, r#"{"termsOfServiceAgreed":true}"#).await;
        assert!(reply.status == 201 || reply.status == 200, "{}", reply.text);
        self.kid = Some(reply.headers["location"].to_str().unwrap().to_string());
        reply
    }
}
