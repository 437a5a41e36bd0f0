//! JWS request authentication for the ACME front end (RFC 8555 §6.2–6.5 on
//! RFC 7515/7517/7518/7638/8037): flattened JWS parsing, account public keys
//! (JWK), signature checks, JWK thumbprints, key authorizations and External
//! Account Binding MACs (RFC 8555 §7.3.4).
//!
//! It must never redeem nonces, look up accounts or touch the store (callers
//! do), and never put key material, MAC keys or signatures into errors or logs.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{agreement, digest, hmac, rand, signature};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind};

/// An account public key parsed from a JWK (RFC 7517; EC and RSA per RFC 7518
/// §6.2–6.3, Ed25519 per RFC 8037 §2), held in canonical form: two JWKs that
/// differ only in optional members, member order or leading zero octets of an
/// RSA integer compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountKey {
    material: KeyMaterial,
}

impl AccountKey {
    /// Parse a JWK object. Accepts EC P-256 and P-384, RSA with a 2048–8192-bit
    /// modulus and an odd exponent in 3..=2^33-1, and OKP Ed25519.
    ///
    /// Private-key members ("d", "p", ...) and missing or mistyped members are
    /// `Malformed`; unknown key types or curves, wrong coordinate lengths,
    /// points off the curve and weak RSA keys are `BadPublicKey`.
    pub fn from_jwk(jwk: &Value) -> Result<Self, Error> {
        Self::parse(jwk, CurveCheck::Full)
    }

    /// Parse a JWK that this hub validated with [`AccountKey::from_jwk`] and
    /// stored itself. It skips only the EC on-curve check, which costs an ECDH
    /// operation per call; ring still rejects an invalid point when verifying,
    /// so a corrupted store can make verification fail but never pass.
    pub fn from_stored_jwk(jwk: &Value) -> Result<Self, Error> {
        Self::parse(jwk, CurveCheck::AtVerify)
    }

    /// The canonical public JWK: only the required members, in RFC 7638 order.
    /// This is what we store and return to clients.
    pub fn to_jwk(&self) -> Value {
        let mut map = Map::new();
        // Inserted in lexicographic order so the object reads canonically
        // whether or not serde_json keeps insertion order.
        match &self.material {
            KeyMaterial::Ec { curve, point } => {
                let (x, y) = curve.split(point);
                map.insert("crv".into(), curve.name().into());
                map.insert("kty".into(), "EC".into());
                map.insert("x".into(), b64(x).into());
                map.insert("y".into(), b64(y).into());
            }
            KeyMaterial::Rsa { n, e } => {
                map.insert("e".into(), b64(e).into());
                map.insert("kty".into(), "RSA".into());
                map.insert("n".into(), b64(n).into());
            }
            KeyMaterial::Ed25519 { x } => {
                map.insert("crv".into(), "Ed25519".into());
                map.insert("kty".into(), "OKP".into());
                map.insert("x".into(), b64(x).into());
            }
        }
        Value::Object(map)
    }

    /// The RFC 7638 thumbprint: base64url(SHA-256(canonical JSON)), no padding.
    pub fn thumbprint(&self) -> String {
        let hash = digest::digest(&digest::SHA256, self.canonical_json().as_bytes());
        b64(hash.as_ref())
    }

    /// The one JWS algorithm that fits this key.
    pub fn algorithm(&self) -> Algorithm {
        match &self.material {
            KeyMaterial::Ec { curve, .. } => curve.algorithm(),
            KeyMaterial::Rsa { .. } => Algorithm::RS256,
            KeyMaterial::Ed25519 { .. } => Algorithm::EdDSA,
        }
    }

    /// Verify a signature made with `alg` over `message`.
    ///
    /// `BadSignatureAlgorithm` when `alg` does not fit the key type,
    /// `Unauthorized` "JWS signature is invalid" when the check fails.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        if alg != self.algorithm() {
            return Err(Error::new(
                ErrorKind::BadSignatureAlgorithm,
                format!(
                    "JWS algorithm {alg} does not fit this {} account key; use {}",
                    self.describe(),
                    self.algorithm()
                ),
            ));
        }
        let checked = match &self.material {
            KeyMaterial::Ec { curve, point } => {
                signature::UnparsedPublicKey::new(curve.verification(), point)
                    .verify(message, signature)
            }
            KeyMaterial::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }.verify(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                message,
                signature,
            ),
            KeyMaterial::Ed25519 { x } => {
                signature::UnparsedPublicKey::new(&signature::ED25519, x).verify(message, signature)
            }
        };
        checked.map_err(|_| Error::unauthorized("JWS signature is invalid"))
    }

    fn parse(jwk: &Value, curve_check: CurveCheck) -> Result<Self, Error> {
        let Value::Object(jwk) = jwk else {
            return Err(Error::malformed("jwk must be a JSON object"));
        };
        // An account key is public; a client that sends private members has
        // leaked its key to us and must not be encouraged (RFC 7518 §6.2.2,
        // §6.3.2, §6.4; RFC 8037 §2).
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
            return Err(Error::malformed(format!(
                "jwk contains the private key member \"{member}\"; send only the public key"
            )));
        }
        let material = match jwk_str(jwk, "kty")? {
            "EC" => {
                let curve = match jwk_str(jwk, "crv")? {
                    "P-256" => Curve::P256,
                    "P-384" => Curve::P384,
                    other => {
                        return Err(bad_public_key(format!(
                            "EC curve {} is not supported; accepted: P-256, P-384",
                            quoted(other)
                        )));
                    }
                };
                // RFC 7518 §6.2.1.2-3: coordinates are the full field length.
                let x = jwk_bytes(jwk, "x")?;
                let y = jwk_bytes(jwk, "y")?;
                let len = curve.coordinate_len();
                if x.len() != len || y.len() != len {
                    return Err(bad_public_key(format!(
                        "{} coordinates must be exactly {len} octets",
                        curve.name()
                    )));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                if curve_check == CurveCheck::Full {
                    check_on_curve(curve, &point)?;
                }
                KeyMaterial::Ec { curve, point }
            }
            "RSA" => {
                // RFC 7518 §6.3.1 asks for minimal encodings, but keys copied
                // from DER INTEGERs often carry a leading zero; the value is
                // the same, so accept it and store the minimal form.
                let n = strip_leading_zeros(jwk_bytes(jwk, "n")?);
                let e = strip_leading_zeros(jwk_bytes(jwk, "e")?);
                check_rsa(&n, &e)?;
                KeyMaterial::Rsa { n, e }
            }
            "OKP" => match jwk_str(jwk, "crv")? {
                "Ed25519" => {
                    let x = jwk_bytes(jwk, "x")?;
                    let x: [u8; 32] = x.try_into().map_err(|_| {
                        bad_public_key("Ed25519 public key \"x\" must be exactly 32 octets")
                    })?;
                    KeyMaterial::Ed25519 { x }
                }
                other => {
                    return Err(bad_public_key(format!(
                        "OKP curve {} is not supported; accepted: Ed25519",
                        quoted(other)
                    )));
                }
            },
            other => {
                return Err(bad_public_key(format!(
                    "key type {} is not supported; accepted: EC (P-256, P-384), RSA, OKP (Ed25519)",
                    quoted(other)
                )));
            }
        };
        Ok(Self { material })
    }

    /// The RFC 7638 §3.2 input: required members only, lexicographic order,
    /// no whitespace. Every value is base64url or a fixed name, so nothing
    /// needs escaping.
    fn canonical_json(&self) -> String {
        match &self.material {
            KeyMaterial::Ec { curve, point } => {
                let (x, y) = curve.split(point);
                format!(
                    r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                    curve.name(),
                    b64(x),
                    b64(y)
                )
            }
            KeyMaterial::Rsa { n, e } => {
                format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n))
            }
            KeyMaterial::Ed25519 { x } => {
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(x))
            }
        }
    }

    fn describe(&self) -> &'static str {
        match &self.material {
            KeyMaterial::Ec { curve, .. } => curve.name(),
            KeyMaterial::Rsa { .. } => "RSA",
            KeyMaterial::Ed25519 { .. } => "Ed25519",
        }
    }
}

/// A JWS signature algorithm we accept for ACME requests (RFC 8555 §6.2: no
/// "none", no MAC). Parse it from the "alg" header with [`str::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256, signature in the fixed r||s form.
    ES256,
    /// ECDSA P-384 with SHA-384, signature in the fixed r||s form.
    ES384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// Ed25519 (RFC 8037).
    EdDSA,
}

impl Algorithm {
    /// Every accepted algorithm, in the order we advertise them (for the
    /// "algorithms" field of a badSignatureAlgorithm problem, RFC 8555 §6.2).
    pub const ALL: [Algorithm; 4] = [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::RS256,
        Algorithm::EdDSA,
    ];

    /// The JOSE name (RFC 7518 §3.1, RFC 8037 §3.1).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::RS256 => "RS256",
            Algorithm::EdDSA => "EdDSA",
        }
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    /// `BadSignatureAlgorithm` for anything but the accepted names, which the
    /// detail lists. Names are case-sensitive (RFC 7515 §4.1.1).
    fn from_str(alg: &str) -> Result<Self, Error> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == alg)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::BadSignatureAlgorithm,
                    format!(
                        "JWS algorithm {} is not accepted; accepted: {ACCEPTED_ALGORITHMS}",
                        quoted(alg)
                    ),
                )
            })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a request names its key (RFC 8555 §6.2): an embedded JWK (newAccount,
/// revokeCert by certificate key, keyChange inner JWS) or an account URL.
#[derive(Debug, Clone)]
pub enum KeyRef {
    Jwk(AccountKey),
    Kid(String),
}

/// A flattened JWS as received (RFC 8555 §6.2, RFC 7515 §7.2.2), parsed but
/// NOT yet verified.
#[derive(Debug, Clone)]
pub struct Jws {
    pub alg: Algorithm,
    /// The "nonce" header. The caller redeems it; a missing nonce is the
    /// caller's decision (badNonce for requests, required absent for the
    /// keyChange inner JWS).
    pub nonce: Option<String>,
    /// The "url" header (RFC 8555 §6.4); the caller compares it with the
    /// request URL.
    pub url: String,
    pub key: KeyRef,
    /// The base64url-decoded payload; empty for POST-as-GET.
    pub payload: Vec<u8>,
    /// `ASCII(protected || '.' || payload)` exactly as sent (RFC 7515 §5.2).
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

impl Jws {
    /// Parse a request body (or a keyChange inner JWS).
    ///
    /// Strict: a JSON object with exactly "protected", "payload" and
    /// "signature"; no general serialization, no unprotected header, no
    /// duplicate member names at any depth; base64url without padding; the
    /// protected header is a JSON object with "alg", "url" and exactly one of
    /// "jwk"/"kid", without "crit" or "b64": false. Everything is `Malformed`
    /// except an unaccepted "alg" (`BadSignatureAlgorithm`) and an
    /// unacceptable "jwk" (see [`AccountKey::from_jwk`]).
    pub fn parse(body: &[u8]) -> Result<Jws, Error> {
        let value = parse_json_strict(body, "request body")?;
        let envelope = Envelope::parse(&value, "JWS")?;
        let header = &envelope.header;

        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.parse::<Algorithm>()?,
            Some(_) => return Err(Error::malformed("JWS header \"alg\" must be a string")),
            None => return Err(Error::malformed("JWS protected header has no \"alg\"")),
        };
        let nonce = match header.get("nonce") {
            Some(Value::String(nonce)) => Some(nonce.clone()),
            Some(_) => return Err(Error::malformed("JWS header \"nonce\" must be a string")),
            None => None,
        };
        let url = match header.get("url") {
            Some(Value::String(url)) => url.clone(),
            Some(_) => return Err(Error::malformed("JWS header \"url\" must be a string")),
            None => {
                return Err(Error::malformed(
                    "JWS protected header has no \"url\" (RFC 8555 §6.4)",
                ));
            }
        };
        let key = match (header.get("jwk"), header.get("kid")) {
            (Some(jwk), None) => KeyRef::Jwk(AccountKey::from_jwk(jwk)?),
            (None, Some(Value::String(kid))) => KeyRef::Kid(kid.clone()),
            (None, Some(_)) => {
                return Err(Error::malformed("JWS header \"kid\" must be a string"));
            }
            (Some(_), Some(_)) => {
                return Err(Error::malformed(
                    "JWS protected header has both \"jwk\" and \"kid\"; exactly one is allowed (RFC 8555 §6.2)",
                ));
            }
            (None, None) => {
                return Err(Error::malformed(
                    "JWS protected header has neither \"jwk\" nor \"kid\"; exactly one is required (RFC 8555 §6.2)",
                ));
            }
        };

        Ok(Jws {
            alg,
            nonce,
            url,
            key,
            payload: envelope.payload,
            signing_input: envelope.signing_input,
            signature: envelope.signature,
        })
    }

    /// Verify the signature with `key`: the account's stored key for
    /// [`KeyRef::Kid`], the embedded key for [`KeyRef::Jwk`].
    pub fn verify(&self, key: &AccountKey) -> Result<(), Error> {
        key.verify(self.alg, &self.signing_input, &self.signature)
    }

    /// True when the payload is exactly empty: a POST-as-GET (RFC 8555 §6.3).
    /// `"payload": "e30"` is `{}`, which is not POST-as-GET.
    pub fn is_post_as_get(&self) -> bool {
        self.payload.is_empty()
    }

    /// The payload parsed as JSON; `Malformed` when it is empty, not JSON,
    /// has duplicate member names or does not fit `T`.
    pub fn payload_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        if self.payload.is_empty() {
            return Err(Error::malformed(
                "request payload is empty (POST-as-GET), but this request needs a JSON payload",
            ));
        }
        check_no_duplicate_members(&self.payload)
            .map_err(|e| Error::malformed(format!("request payload is not valid JSON: {e}")))?;
        serde_json::from_slice(&self.payload)
            .map_err(|e| Error::malformed(format!("request payload is invalid: {e}")))
    }
}

/// An External Account Binding (RFC 8555 §7.3.4) whose shape, "url" and
/// payload are checked, but whose MAC is not yet verified. Split from
/// [`verify_external_account_binding`] so a caller can fetch the MAC key for
/// [`ExternalAccountBinding::kid`] asynchronously between the two steps.
#[derive(Debug, Clone)]
pub struct ExternalAccountBinding {
    /// The key identifier the CA gave out with the MAC key.
    pub kid: String,
    mac: &'static hmac::Algorithm,
    signing_input: Vec<u8>,
    tag: Vec<u8>,
}

impl ExternalAccountBinding {
    /// Check the shape of the "externalAccountBinding" value of a newAccount
    /// payload: a flattened JWS with a MAC "alg" (HS256/HS384/HS512), a "kid",
    /// a "url" equal to `expected_url` (the outer JWS's), no "nonce", and the
    /// outer account key as payload.
    ///
    /// `Malformed` for shape, "url" and payload errors; `BadSignatureAlgorithm`
    /// for a non-MAC "alg".
    pub fn parse(eab: &Value, outer_key: &AccountKey, expected_url: &str) -> Result<Self, Error> {
        let envelope = Envelope::parse(eab, "externalAccountBinding")?;
        let header = &envelope.header;

        let mac = match header.get("alg") {
            Some(Value::String(alg)) => match alg.as_str() {
                "HS256" => &hmac::HMAC_SHA256,
                "HS384" => &hmac::HMAC_SHA384,
                "HS512" => &hmac::HMAC_SHA512,
                other => {
                    return Err(Error::new(
                        ErrorKind::BadSignatureAlgorithm,
                        format!(
                            "externalAccountBinding algorithm {} is not accepted; accepted: HS256, HS384, HS512",
                            quoted(other)
                        ),
                    ));
                }
            },
            Some(_) => {
                return Err(Error::malformed(
                    "externalAccountBinding header \"alg\" must be a string",
                ));
            }
            None => {
                return Err(Error::malformed(
                    "externalAccountBinding protected header has no \"alg\"",
                ));
            }
        };
        // RFC 8555 §7.3.4: the binding is replay-protected by the outer JWS,
        // and it names its key by "kid" only.
        if header.contains_key("nonce") {
            return Err(Error::malformed(
                "externalAccountBinding must not contain a \"nonce\" (RFC 8555 §7.3.4)",
            ));
        }
        if header.contains_key("jwk") {
            return Err(Error::malformed(
                "externalAccountBinding must name its key with \"kid\", not \"jwk\" (RFC 8555 §7.3.4)",
            ));
        }
        let kid = match header.get("kid") {
            Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
            _ => {
                return Err(Error::malformed(
                    "externalAccountBinding must have a non-empty string \"kid\" (RFC 8555 §7.3.4)",
                ));
            }
        };
        match header.get("url") {
            Some(Value::String(url)) if url == expected_url => {}
            _ => {
                return Err(Error::malformed(format!(
                    "externalAccountBinding \"url\" must be the newAccount URL {expected_url} (RFC 8555 §7.3.4)"
                )));
            }
        }
        let payload = parse_json_strict(&envelope.payload, "externalAccountBinding payload")?;
        let bound_key = AccountKey::from_jwk(&payload).map_err(|e| {
            Error::malformed(format!(
                "externalAccountBinding payload is not a usable JWK: {}",
                e.detail
            ))
        })?;
        if &bound_key != outer_key {
            return Err(Error::malformed(
                "externalAccountBinding payload is not the account key of the outer JWS (RFC 8555 §7.3.4)",
            ));
        }

        Ok(Self {
            kid,
            mac,
            signing_input: envelope.signing_input,
            tag: envelope.signature,
        })
    }

    /// Verify the MAC with the key stored for [`Self::kid`], in constant time.
    /// `Unauthorized` when it does not match.
    pub fn verify(&self, mac_key: &[u8]) -> Result<(), Error> {
        let key = hmac::Key::new(*self.mac, mac_key);
        hmac::verify(&key, &self.signing_input, &self.tag).map_err(|_| {
            Error::unauthorized("externalAccountBinding MAC is invalid for its \"kid\"")
        })
    }
}

/// RFC 8555 §7.3.4 External Account Binding check in one step: parse `eab`
/// (see [`ExternalAccountBinding::parse`]), fetch the MAC key with `lookup`,
/// verify the MAC, and return the kid.
///
/// `Malformed` for shape, `BadSignatureAlgorithm` for a non-MAC "alg",
/// `Unauthorized` for an unknown kid or a wrong MAC.
pub fn verify_external_account_binding(
    eab: &Value,
    outer_key: &AccountKey,
    expected_url: &str,
    lookup: impl FnOnce(&str) -> Option<Vec<u8>>,
) -> Result<String, Error> {
    let binding = ExternalAccountBinding::parse(eab, outer_key, expected_url)?;
    let mac_key = lookup(&binding.kid).ok_or_else(|| {
        Error::unauthorized(format!(
            "external account key {} is unknown",
            quoted(&binding.kid)
        ))
    })?;
    binding.verify(&mac_key)?;
    Ok(binding.kid)
}

/// base64url without padding (RFC 4648 §5, RFC 7515 §2).
pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Strict base64url decoding: no padding, no whitespace, no characters outside
/// the URL-safe alphabet, no non-zero trailing bits. `Malformed` otherwise.
pub fn b64_decode(s: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| Error::malformed("invalid base64url (RFC 4648 §5, without padding)"))
}

/// The key authorization of RFC 8555 §8.1: token "." thumbprint.
pub fn key_authorization(token: &str, key: &AccountKey) -> String {
    format!("{token}.{}", key.thumbprint())
}

/// The algorithms of [`Algorithm::ALL`], for error details.
const ACCEPTED_ALGORITHMS: &str = "ES256, ES384, RS256, EdDSA";

/// Private-key members of RFC 7518 §6.2.2, §6.3.2 and §6.4 and RFC 8037 §2.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// ring's RSA_PKCS1_2048_8192_SHA256 bounds; we check them at parse time so a
/// weak key fails with badPublicKey at newAccount rather than at every request.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;
/// ring's limit on public exponents (33 bits).
const RSA_MAX_EXPONENT: u64 = (1 << 33) - 1;

#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyMaterial {
    /// The uncompressed SEC1 point 0x04 || x || y, as ring wants it.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    /// Big-endian integers without leading zero octets.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ed25519 {
        x: [u8; 32],
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }

    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Curve::P256 => Algorithm::ES256,
            Curve::P384 => Algorithm::ES384,
        }
    }

    /// JWS ECDSA signatures are the fixed-width r||s form (RFC 7518 §3.4).
    fn verification(self) -> &'static signature::EcdsaVerificationAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
        }
    }

    fn agreement(self) -> &'static agreement::Algorithm {
        match self {
            Curve::P256 => &agreement::ECDH_P256,
            Curve::P384 => &agreement::ECDH_P384,
        }
    }

    /// Split an uncompressed point into its x and y coordinates.
    fn split(self, point: &[u8]) -> (&[u8], &[u8]) {
        let len = self.coordinate_len();
        // `point` was built as 0x04 || x || y with both `len` long.
        point[1..].split_at(len)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CurveCheck {
    /// Check the point at parse time (keys from clients).
    Full,
    /// Leave it to ring at verification (keys we stored after a full check).
    AtVerify,
}

/// The generic part of a flattened JWS (RFC 7515 §7.2.2), shared by requests
/// and External Account Bindings.
struct Envelope {
    header: Map<String, Value>,
    payload: Vec<u8>,
    signature: Vec<u8>,
    signing_input: Vec<u8>,
}

impl Envelope {
    fn parse(value: &Value, what: &str) -> Result<Self, Error> {
        let Value::Object(object) = value else {
            return Err(Error::malformed(format!(
                "{what} must be a JSON object in the flattened JWS JSON serialization (RFC 8555 §6.2)"
            )));
        };
        // RFC 8555 §6.2: flattened serialization only, and every header
        // parameter protected; an unprotected "header" could smuggle a
        // parameter the signature does not cover.
        if object.contains_key("signatures") {
            return Err(Error::malformed(format!(
                "{what} uses the general JWS JSON serialization (\"signatures\"); send the flattened form (RFC 8555 §6.2)"
            )));
        }
        if object.contains_key("header") {
            return Err(Error::malformed(format!(
                "{what} has an unprotected \"header\"; all header parameters must be in \"protected\" (RFC 8555 §6.2)"
            )));
        }
        if let Some(extra) = object
            .keys()
            .find(|k| !matches!(k.as_str(), "protected" | "payload" | "signature"))
        {
            return Err(Error::malformed(format!(
                "{what} has the unexpected member {}; only \"protected\", \"payload\" and \"signature\" are allowed",
                quoted(extra)
            )));
        }
        let protected = envelope_str(object, "protected", what)?;
        let payload = envelope_str(object, "payload", what)?;
        let signature = envelope_str(object, "signature", what)?;

        let header_bytes = envelope_b64(protected, "protected", what)?;
        let Value::Object(header) = parse_json_strict(&header_bytes, "JWS protected header")?
        else {
            return Err(Error::malformed(format!(
                "{what} protected header must be a JSON object"
            )));
        };
        // We implement no extensions, so any critical one must fail
        // (RFC 7515 §4.1.11); unencoded payloads (RFC 7797) would change
        // the signing input.
        if header.contains_key("crit") {
            return Err(Error::malformed(format!(
                "{what} header \"crit\" is not supported (RFC 7515 §4.1.11)"
            )));
        }
        if header.get("b64").is_some_and(|b| b != &Value::Bool(true)) {
            return Err(Error::malformed(format!(
                "{what} with an unencoded payload (\"b64\", RFC 7797) is not accepted"
            )));
        }
        let payload_bytes = envelope_b64(payload, "payload", what)?;
        let signature_bytes = envelope_b64(signature, "signature", what)?;
        if signature_bytes.is_empty() {
            return Err(Error::malformed(format!("{what} signature is empty")));
        }

        let mut signing_input = Vec::with_capacity(protected.len() + 1 + payload.len());
        signing_input.extend_from_slice(protected.as_bytes());
        signing_input.push(b'.');
        signing_input.extend_from_slice(payload.as_bytes());

        Ok(Self {
            header,
            payload: payload_bytes,
            signature: signature_bytes,
            signing_input,
        })
    }
}

fn envelope_str<'a>(
    object: &'a Map<String, Value>,
    name: &str,
    what: &str,
) -> Result<&'a str, Error> {
    match object.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Error::malformed(format!(
            "{what} member \"{name}\" must be a string"
        ))),
        None => Err(Error::malformed(format!("{what} has no \"{name}\" member"))),
    }
}

fn envelope_b64(value: &str, name: &str, what: &str) -> Result<Vec<u8>, Error> {
    b64_decode(value).map_err(|_| {
        Error::malformed(format!(
            "{what} member \"{name}\" is not base64url without padding (RFC 7515 §2)"
        ))
    })
}

fn jwk_str<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, Error> {
    match jwk.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Error::malformed(format!(
            "jwk member \"{name}\" must be a string"
        ))),
        None => Err(Error::malformed(format!("jwk has no \"{name}\" member"))),
    }
}

fn jwk_bytes(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, Error> {
    b64_decode(jwk_str(jwk, name)?).map_err(|_| {
        Error::malformed(format!(
            "jwk member \"{name}\" is not base64url without padding"
        ))
    })
}

fn bad_public_key(detail: impl Into<String>) -> Error {
    Error::new(ErrorKind::BadPublicKey, detail)
}

/// Quote a client-supplied name for an error detail, cut short so a client
/// cannot make our problem documents arbitrarily large.
fn quoted(s: &str) -> String {
    const MAX_CHARS: usize = 40;
    if s.chars().count() <= MAX_CHARS {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX_CHARS).collect();
        format!("{head:?}...")
    }
}

/// ring validates a peer point only when it is used, and signature
/// verification cannot tell "bad point" from "bad signature". An ECDH with a
/// throwaway key runs exactly ring's point validation (coordinates below p,
/// point on the curve), so an invalid key is `BadPublicKey` at newAccount
/// instead of an endless stream of invalid signatures.
fn check_on_curve(curve: Curve, point: &[u8]) -> Result<(), Error> {
    let rng = rand::SystemRandom::new();
    let ephemeral =
        agreement::EphemeralPrivateKey::generate(curve.agreement(), &rng).map_err(|_| {
            Error::internal(
                "checking an EC account key",
                "ephemeral key generation failed",
            )
        })?;
    let peer = agreement::UnparsedPublicKey::new(curve.agreement(), point);
    agreement::agree_ephemeral(ephemeral, &peer, |_| ()).map_err(|_| {
        bad_public_key(format!(
            "the {} point (x, y) is not on the curve",
            curve.name()
        ))
    })
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// The same bounds ring applies when verifying with RSA_PKCS1_2048_8192_SHA256,
/// except that we count the modulus in exact bits where ring rounds to octets.
fn check_rsa(n: &[u8], e: &[u8]) -> Result<(), Error> {
    let bits = match n.first() {
        Some(&top) => (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
        None => 0,
    };
    if bits < RSA_MIN_BITS {
        return Err(bad_public_key(format!(
            "RSA modulus is {bits} bits; at least {RSA_MIN_BITS} are required"
        )));
    }
    if bits > RSA_MAX_BITS {
        return Err(bad_public_key(format!(
            "RSA modulus is {bits} bits; at most {RSA_MAX_BITS} are accepted"
        )));
    }
    if n.last().is_some_and(|low| low & 1 == 0) {
        return Err(bad_public_key("RSA modulus is even"));
    }
    let exponent = if e.len() <= 5 {
        e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    } else {
        u64::MAX
    };
    if !(3..=RSA_MAX_EXPONENT).contains(&exponent) || exponent & 1 == 0 {
        return Err(bad_public_key(
            "RSA public exponent must be odd, at least 3 and below 2^33",
        ));
    }
    Ok(())
}

/// Parse JSON, rejecting duplicate member names. RFC 7515 §4 lets a parser
/// either reject them or keep the last; we reject, so no two parsers on the
/// path can disagree about which "url" or "kid" was signed.
fn parse_json_strict(json: &[u8], what: &str) -> Result<Value, Error> {
    let value: Value = serde_json::from_slice(json)
        .map_err(|e| Error::malformed(format!("{what} is not valid JSON: {e}")))?;
    check_no_duplicate_members(json)
        .map_err(|e| Error::malformed(format!("{what} is not valid JSON: {e}")))?;
    Ok(value)
}

fn check_no_duplicate_members(json: &[u8]) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    NoDuplicateMembers::deserialize(&mut deserializer)?;
    deserializer.end()
}

/// A JSON value that is only walked, to find duplicate member names at any
/// depth (serde_json's own maps silently keep the last one).
struct NoDuplicateMembers;

impl<'de> Deserialize<'de> for NoDuplicateMembers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicateMembersVisitor)
    }
}

struct NoDuplicateMembersVisitor;

impl<'de> Visitor<'de> for NoDuplicateMembersVisitor {
    type Value = NoDuplicateMembers;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(NoDuplicateMembers)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(NoDuplicateMembers)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(NoDuplicateMembers)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(NoDuplicateMembers)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(NoDuplicateMembers)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(NoDuplicateMembers)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<NoDuplicateMembers>()?.is_some() {}
        Ok(NoDuplicateMembers)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if seen.contains(&name) {
                return Err(de::Error::custom(format!(
                    "duplicate member {}",
                    quoted(&name)
                )));
            }
            map.next_value::<NoDuplicateMembers>()?;
            seen.insert(name);
        }
        Ok(NoDuplicateMembers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
    use serde_json::json;

    const URL: &str = "https://acme.test/acme/default/new-account";

    /// A 2048-bit RSA key generated with `openssl genpkey` for these tests
    /// only (ring cannot generate RSA keys), PKCS#8 DER in standard base64.
    const RSA_PKCS8: &str = "
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDjNtiH4aUTVm+YZeYtMz7nfKmk
KXJa3zOqvFkqyxqNu7jNDMN+caj9U6QhXboCN2ULhv3m68aKT53qlqFViEHCAP3+i8497J10tDZq
a7yB1KsFEP34asHT3qUhe0h9KPjdzdIw4HIF+UoKQnTQyw2IXgZt3tsoJx/b0lTsxsIguzPz0Jkn
zSHqAZugLf9P0TW5uCwPZR0vsXCOViTn0fQXUKbIoM/gdxJV/7yxC1/DzISC0rqJrTgXXpLoO5gi
QN113MRnAkSb0lB9Wt+wtBL5bDZVutfJFAQor6uifnXUnzGmFK9d6bItbxGDXrtKUKoKkgEX5BM6
ph0Bs/dCLOfBAgMBAAECggEAIL+4+ezWBDGDKC4XvRAT0v2u3dBzgRGGuucm2vonO6KBAl0CmGj9
eHXjxENkGgmt8LlmQzBcj3bmRfesDU30XGgUM+omsdo236lR5ojcxMHIXJSUZofMpCMFHgxM6G1N
YXrW/uB6zs2dlFj7yVRbAPq8Zn2mjOUGvIJWZ0JGnLzZNnWwtE7JX+x8a4sKVcoOE1wldA4bTNCZ
zrMD8u3xDrbNYhbHRrX6stMnQ40XHWDWr8IriAr48FGcBvweW90CdwLXahk++2oCvU00lkOKryoD
aPbC09lWIfzBUc6rjb8SIv5lMNmhuDruXaHDEYPIuSw2qinpVh8NJrxTw11OIQKBgQD3Ozgpcjzz
qFbYouNgRkSd3NwAhAQtamTSQEFcF0IbDoj4RLxmDiE02jZvVS7dFGfaQrWus4C5Sf/funCVk6ET
H2YJ587cVd9Qtu7rnTTozF1LlNKq2LcUM3tKAPrViJNFMPQAjJp4jcNgYubpZsv5jd4hIAT1GUUa
vwX+DzaStQKBgQDrReC2HmfBBL8v0/MIYpgIntiSFzvhHGfrdGFbAFFMTlN32sZm9nRluklFzjhC
AimHKj8a2FQJawf3S7WCXi8YAoW7LRDL7zKhDBLms9NDCTYXEKJ58dJzF8MP4LcHG8oEJHWdHR3w
dCDO3nIOLpDuy2E4TwOcGM3sCwcD4qisXQKBgG0FrEp6me5IuaNmkSYPVorWrh18Get9E2Cz/R6D
Ex+jVTtF9F58tJ/96itGQRg0u2dAK6YSeh07SJ58NNGA/HLWUcTkeBApvgR15v33oTFXjXya8Btu
3a0G1sNXk0U+qNLGN5NWbXfj69hBRNp//kraCK5K1GTQ8+xLeHUEeGhRAoGAc0IWZeHbXlne96VT
yGXUqVR4MImlUhDCcDzhfN1Y9pLgnTTWQZa3SybJwqLWOLAqfAccRyB3eu2uR14Vm7pcQ9zoetwH
AIE8Ql1R3Sd3db3Le90wW6E2Qh//9YVW5OqeOw1JeSDMjAG4GOAs6/mwEuwbwqQi1pPoPZzhYOvn
ShkCgYEAuh63oDuHI5oMxIBOMgJUOQr+WdJOaJA4f3IeS2RPWpCI84hUYwiL3eh48soTnTzggK/s
D/3pVWMidP8SnTkuCblb0ibfTwiNOhMirkIeiIzfgf2L6vTIlvi62OlDAxXw7XPIfEStIFkYf2X/
FKDZ7/92vFjI0JjLAwiQrYCeIOE=
";

    enum TestKey {
        Ec(EcdsaKeyPair, Curve),
        Ed(Ed25519KeyPair),
        Rsa(RsaKeyPair),
    }

    impl TestKey {
        fn p256() -> Self {
            Self::ec(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, Curve::P256)
        }

        fn p384() -> Self {
            Self::ec(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, Curve::P384)
        }

        fn ec(alg: &'static signature::EcdsaSigningAlgorithm, curve: Curve) -> Self {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            Self::Ec(
                EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap(),
                curve,
            )
        }

        fn ed25519() -> Self {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            Self::Ed(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
        }

        fn rsa() -> Self {
            let der = base64::engine::general_purpose::STANDARD
                .decode(RSA_PKCS8.split_whitespace().collect::<String>())
                .unwrap();
            Self::Rsa(RsaKeyPair::from_pkcs8(&der).unwrap())
        }

        fn alg(&self) -> &'static str {
            match self {
                TestKey::Ec(_, Curve::P256) => "ES256",
                TestKey::Ec(_, Curve::P384) => "ES384",
                TestKey::Ed(_) => "EdDSA",
                TestKey::Rsa(_) => "RS256",
            }
        }

        fn jwk(&self) -> Value {
            match self {
                TestKey::Ec(pair, curve) => {
                    let (x, y) = curve.split(pair.public_key().as_ref());
                    json!({"kty": "EC", "crv": curve.name(), "x": b64(x), "y": b64(y)})
                }
                TestKey::Ed(pair) => {
                    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())})
                }
                TestKey::Rsa(pair) => {
                    let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
                    json!({"kty": "RSA", "n": b64(&public.n), "e": b64(&public.e)})
                }
            }
        }

        fn account_key(&self) -> AccountKey {
            AccountKey::from_jwk(&self.jwk()).unwrap()
        }

        fn sign(&self, message: &[u8]) -> Vec<u8> {
            let rng = SystemRandom::new();
            match self {
                TestKey::Ec(pair, _) => pair.sign(&rng, message).unwrap().as_ref().to_vec(),
                TestKey::Ed(pair) => pair.sign(message).as_ref().to_vec(),
                TestKey::Rsa(pair) => {
                    let mut sig = vec![0; pair.public().modulus_len()];
                    pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                        .unwrap();
                    sig
                }
            }
        }

        /// A flattened JWS over `payload` with `header` as protected header.
        fn jws(&self, header: &Value, payload: &[u8]) -> Value {
            let protected = b64(header.to_string().as_bytes());
            let payload = b64(payload);
            let sig = self.sign(format!("{protected}.{payload}").as_bytes());
            json!({"protected": protected, "payload": payload, "signature": b64(&sig)})
        }

        /// A newAccount-style header: embedded jwk, nonce, url.
        fn jwk_header(&self) -> Value {
            json!({"alg": self.alg(), "jwk": self.jwk(), "nonce": "bm9uY2U", "url": URL})
        }
    }

    fn body(value: &Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    fn parse_err(value: &Value) -> Error {
        Jws::parse(&body(value)).unwrap_err()
    }

    fn assert_kind(result: Result<impl fmt::Debug, Error>, kind: ErrorKind) -> Error {
        let err = result.unwrap_err();
        assert_eq!(err.kind, kind, "unexpected error: {err}");
        err
    }

    fn round_trip(key: TestKey) {
        let payload = br#"{"termsOfServiceAgreed":true}"#;
        let jws = Jws::parse(&body(&key.jws(&key.jwk_header(), payload))).unwrap();
        assert_eq!(jws.alg.as_str(), key.alg());
        assert_eq!(jws.nonce.as_deref(), Some("bm9uY2U"));
        assert_eq!(jws.url, URL);
        let KeyRef::Jwk(embedded) = &jws.key else {
            panic!("expected an embedded jwk, got {:?}", jws.key);
        };
        assert_eq!(embedded, &key.account_key());
        jws.verify(embedded).unwrap();
        assert!(!jws.is_post_as_get());
        let parsed: Value = jws.payload_json().unwrap();
        assert_eq!(parsed, json!({"termsOfServiceAgreed": true}));
    }

    #[test]
    fn es256_round_trip() {
        round_trip(TestKey::p256());
    }

    #[test]
    fn es384_round_trip() {
        round_trip(TestKey::p384());
    }

    #[test]
    fn eddsa_round_trip() {
        round_trip(TestKey::ed25519());
    }

    #[test]
    fn rs256_round_trip() {
        round_trip(TestKey::rsa());
    }

    #[test]
    fn kid_request_verifies_with_the_account_key_only() {
        let key = TestKey::p256();
        let header =
            json!({"alg": "ES256", "kid": "https://acme.test/acct/1", "nonce": "n", "url": URL});
        let jws = Jws::parse(&body(&key.jws(&header, b"{}"))).unwrap();
        assert!(matches!(&jws.key, KeyRef::Kid(kid) if kid == "https://acme.test/acct/1"));
        jws.verify(&key.account_key()).unwrap();

        let err = assert_kind(
            jws.verify(&TestKey::p256().account_key()),
            ErrorKind::Unauthorized,
        );
        assert_eq!(err.detail, "JWS signature is invalid");
    }

    #[test]
    fn tampered_payload_fails_verification() {
        for key in [TestKey::p256(), TestKey::ed25519(), TestKey::rsa()] {
            let mut jws = key.jws(&key.jwk_header(), br#"{"onlyReturnExisting":true}"#);
            jws["payload"] = b64(br#"{"onlyReturnExisting":false}"#).into();
            let parsed = Jws::parse(&body(&jws)).unwrap();
            let err = assert_kind(parsed.verify(&key.account_key()), ErrorKind::Unauthorized);
            assert_eq!(err.detail, "JWS signature is invalid");
        }
    }

    #[test]
    fn unaccepted_algorithms_are_bad_signature_algorithm() {
        let key = TestKey::p256();
        for alg in ["none", "HS256", "ES512", "PS256", "RS512", "es256", ""] {
            let mut header = key.jwk_header();
            header["alg"] = alg.into();
            let err = parse_err(&key.jws(&header, b"{}"));
            assert_eq!(
                err.kind,
                ErrorKind::BadSignatureAlgorithm,
                "alg {alg:?}: {err}"
            );
            assert!(err.detail.contains("ES256, ES384, RS256, EdDSA"), "{err}");
        }
    }

    #[test]
    fn algorithm_must_fit_the_key_type() {
        let key = TestKey::p256();
        for alg in ["ES384", "RS256", "EdDSA"] {
            let mut header = key.jwk_header();
            header["alg"] = alg.into();
            let jws = Jws::parse(&body(&key.jws(&header, b"{}"))).unwrap();
            let err = assert_kind(
                jws.verify(&key.account_key()),
                ErrorKind::BadSignatureAlgorithm,
            );
            assert!(err.detail.contains("use ES256"), "{err}");
        }
        let ed = TestKey::ed25519().account_key();
        assert_kind(
            ed.verify(Algorithm::ES256, b"m", &[1; 64]),
            ErrorKind::BadSignatureAlgorithm,
        );
    }

    #[test]
    fn exactly_one_of_jwk_and_kid() {
        let key = TestKey::p256();
        let mut both = key.jwk_header();
        both["kid"] = "https://acme.test/acct/1".into();
        let err = assert_kind(
            Jws::parse(&body(&key.jws(&both, b"{}"))),
            ErrorKind::Malformed,
        );
        assert!(err.detail.contains("both"), "{err}");

        let mut neither = key.jwk_header();
        neither.as_object_mut().unwrap().remove("jwk");
        let err = assert_kind(
            Jws::parse(&body(&key.jws(&neither, b"{}"))),
            ErrorKind::Malformed,
        );
        assert!(err.detail.contains("neither"), "{err}");
    }

    #[test]
    fn url_is_required_and_nonce_optional() {
        let key = TestKey::p256();
        let mut header = key.jwk_header();
        header.as_object_mut().unwrap().remove("url");
        let err = parse_err(&key.jws(&header, b"{}"));
        assert_eq!(err.kind, ErrorKind::Malformed);
        assert!(err.detail.contains("\"url\""), "{err}");

        let mut header = key.jwk_header();
        header.as_object_mut().unwrap().remove("nonce");
        let jws = Jws::parse(&body(&key.jws(&header, b"{}"))).unwrap();
        assert_eq!(jws.nonce, None);
    }

    #[test]
    fn only_the_flattened_serialization_is_accepted() {
        let key = TestKey::p256();
        let flat = key.jws(&key.jwk_header(), b"{}");

        let general = json!({"payload": flat["payload"], "signatures": [
            {"protected": flat["protected"], "signature": flat["signature"]}
        ]});
        let err = parse_err(&general);
        assert_eq!(err.kind, ErrorKind::Malformed);
        assert!(err.detail.contains("signatures"), "{err}");

        let mut with_header = flat.clone();
        with_header["header"] = json!({"kid": "x"});
        let err = parse_err(&with_header);
        assert_eq!(err.kind, ErrorKind::Malformed);
        assert!(err.detail.contains("\"header\""), "{err}");

        let mut extra = flat.clone();
        extra["extra"] = json!(1);
        assert_eq!(parse_err(&extra).kind, ErrorKind::Malformed);

        let mut missing = flat.clone();
        missing.as_object_mut().unwrap().remove("signature");
        assert_eq!(parse_err(&missing).kind, ErrorKind::Malformed);

        assert_kind(Jws::parse(b"not json"), ErrorKind::Malformed);
        assert_kind(Jws::parse(b"[]"), ErrorKind::Malformed);
    }

    #[test]
    fn base64url_is_strict() {
        let key = TestKey::p256();
        // A header whose encoding needs padding: padded and unpadded forms.
        let header = json!({"alg": "ES256", "kid": "k", "url": "https://a.test/x"});
        let mut jws = key.jws(&header, b"{}");
        let protected = jws["protected"].as_str().unwrap().to_owned();
        assert!(protected.len() % 4 != 0, "test header must need padding");
        let padding = "=".repeat(4 - protected.len() % 4);
        jws["protected"] = format!("{protected}{padding}").into();
        let err = parse_err(&jws);
        assert_eq!(err.kind, ErrorKind::Malformed);
        assert!(err.detail.contains("\"protected\""), "{err}");

        assert_kind(b64_decode("e30="), ErrorKind::Malformed);
        assert_kind(b64_decode("ab+/"), ErrorKind::Malformed);
        assert_kind(b64_decode("e3 0"), ErrorKind::Malformed);
        // "e31" has non-zero trailing bits: not the canonical encoding of "{}".
        assert_kind(b64_decode("e31"), ErrorKind::Malformed);
        assert_eq!(b64_decode("e30").unwrap(), b"{}");
        assert_eq!(b64(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn crit_b64_and_duplicate_header_members_are_rejected() {
        let key = TestKey::p256();
        let mut header = key.jwk_header();
        header["crit"] = json!(["b64"]);
        header["b64"] = json!(false);
        assert_eq!(
            parse_err(&key.jws(&header, b"{}")).kind,
            ErrorKind::Malformed
        );

        let mut header = key.jwk_header();
        header["b64"] = json!(false);
        assert_eq!(
            parse_err(&key.jws(&header, b"{}")).kind,
            ErrorKind::Malformed
        );

        // Two "url" members: a last-wins parser and a first-wins parser would
        // disagree about what was signed.
        let raw =
            format!(r#"{{"alg":"ES256","kid":"k","url":"{URL}","url":"https://evil.test/"}}"#);
        let protected = b64(raw.as_bytes());
        let payload = b64(b"{}");
        let sig = key.sign(format!("{protected}.{payload}").as_bytes());
        let jws = json!({"protected": protected, "payload": payload, "signature": b64(&sig)});
        let err = parse_err(&jws);
        assert_eq!(err.kind, ErrorKind::Malformed);
        assert!(err.detail.contains("duplicate member \"url\""), "{err}");
    }

    #[test]
    fn private_key_members_are_malformed() {
        let mut jwk = TestKey::p256().jwk();
        jwk["d"] = b64(&[7; 32]).into();
        let err = assert_kind(AccountKey::from_jwk(&jwk), ErrorKind::Malformed);
        assert!(err.detail.contains("private"), "{err}");
        assert!(!err.detail.contains(&b64(&[7; 32])), "detail leaks the key");
    }

    #[test]
    fn p256_point_not_on_curve_is_bad_public_key() {
        let mut jwk = TestKey::p256().jwk();
        let mut y = b64_decode(jwk["y"].as_str().unwrap()).unwrap();
        y[31] ^= 1;
        jwk["y"] = b64(&y).into();
        let err = assert_kind(AccountKey::from_jwk(&jwk), ErrorKind::BadPublicKey);
        assert!(err.detail.contains("not on the curve"), "{err}");
        // The stored-key path defers the check to ring, which still refuses.
        let stored = AccountKey::from_stored_jwk(&jwk).unwrap();
        assert_kind(
            stored.verify(Algorithm::ES256, b"m", &[1; 64]),
            ErrorKind::Unauthorized,
        );
    }

    #[test]
    fn unsupported_or_weak_keys_are_bad_public_key() {
        let p256 = TestKey::p256().jwk();
        let cases = [
            json!({"kty": "EC", "crv": "P-521", "x": p256["x"], "y": p256["y"]}),
            json!({"kty": "EC", "crv": "P-256", "x": b64(&[1; 31]), "y": p256["y"]}),
            json!({"kty": "OKP", "crv": "X25519", "x": b64(&[9; 32])}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&[9; 31])}),
            json!({"kty": "oct-ish"}),
            // 1024-bit odd modulus.
            json!({"kty": "RSA", "n": b64(&[0xd1; 128]), "e": "AQAB"}),
            // Even exponent, exponent 1, 9000-bit modulus.
            json!({"kty": "RSA", "n": b64(&[0xd1; 256]), "e": b64(&[4])}),
            json!({"kty": "RSA", "n": b64(&[0xd1; 256]), "e": b64(&[1])}),
            json!({"kty": "RSA", "n": b64(&[0xd1; 1125]), "e": "AQAB"}),
        ];
        for jwk in cases {
            let err = AccountKey::from_jwk(&jwk).unwrap_err();
            assert_eq!(err.kind, ErrorKind::BadPublicKey, "{jwk}: {err}");
        }
        let err = AccountKey::from_jwk(&json!({"kty": "RSA", "n": b64(&[0xd1; 128]), "e": "AQAB"}))
            .unwrap_err();
        assert!(err.detail.contains("1024 bits"), "{err}");

        assert_kind(
            AccountKey::from_jwk(&json!({"crv": "P-256"})),
            ErrorKind::Malformed,
        );
        assert_kind(
            AccountKey::from_jwk(&json!({"kty": "EC", "crv": "P-256", "x": p256["x"]})),
            ErrorKind::Malformed,
        );
    }

    #[test]
    fn rfc7638_thumbprint_vector() {
        // RFC 7638 §3.1, including its optional "alg" and "kid" members.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let key = AccountKey::from_jwk(&jwk).unwrap();
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert_eq!(key.algorithm(), Algorithm::RS256);
        assert_eq!(
            key.to_jwk(),
            json!({"e": "AQAB", "kty": "RSA", "n": jwk["n"]}),
            "to_jwk keeps only the required members"
        );
        assert_eq!(
            key_authorization("tok3n", &key),
            "tok3n.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );

        // A leading zero octet on n (as copied from a DER INTEGER) is the same key.
        let mut n = b64_decode(jwk["n"].as_str().unwrap()).unwrap();
        n.insert(0, 0);
        let padded =
            AccountKey::from_jwk(&json!({"kty": "RSA", "n": b64(&n), "e": "AQAB"})).unwrap();
        assert_eq!(padded, key);
        assert_eq!(padded.thumbprint(), key.thumbprint());
    }

    #[test]
    fn canonical_form_ignores_member_order_and_optional_members() {
        for key in [TestKey::p256(), TestKey::p384(), TestKey::ed25519()] {
            let canonical = key.account_key();
            let mut decorated = key.jwk();
            decorated["kid"] = "laptop".into();
            decorated["use"] = "sig".into();
            let decorated = AccountKey::from_jwk(&decorated).unwrap();
            assert_eq!(decorated, canonical);
            assert_eq!(decorated.thumbprint(), canonical.thumbprint());
            // What we store parses back to the same key, thumbprint included.
            let stored = AccountKey::from_stored_jwk(&canonical.to_jwk()).unwrap();
            assert_eq!(stored, canonical);
            // The thumbprint is SHA-256 of the members in lexicographic order.
            let jwk = canonical.to_jwk();
            let expected = match &jwk["kty"] {
                Value::String(kty) if kty == "OKP" => format!(
                    r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                    jwk["x"].as_str().unwrap()
                ),
                _ => format!(
                    r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                    jwk["crv"].as_str().unwrap(),
                    jwk["x"].as_str().unwrap(),
                    jwk["y"].as_str().unwrap()
                ),
            };
            let hash = digest::digest(&digest::SHA256, expected.as_bytes());
            assert_eq!(canonical.thumbprint(), b64(hash.as_ref()));
        }
    }

    #[test]
    fn post_as_get_is_only_an_empty_payload() {
        let key = TestKey::p256();
        let header =
            json!({"alg": "ES256", "kid": "https://acme.test/acct/1", "nonce": "n", "url": URL});
        let get = Jws::parse(&body(&key.jws(&header, b""))).unwrap();
        assert!(get.is_post_as_get());
        assert_eq!(key.jws(&header, b"")["payload"], "");
        get.verify(&key.account_key()).unwrap();
        assert_kind(get.payload_json::<Value>(), ErrorKind::Malformed);

        let empty_object = Jws::parse(&body(&key.jws(&header, b"{}"))).unwrap();
        assert!(!empty_object.is_post_as_get());
        assert_eq!(empty_object.payload_json::<Value>().unwrap(), json!({}));
    }

    #[test]
    fn payload_json_rejects_non_json_and_duplicates() {
        let key = TestKey::p256();
        let header = json!({"alg": "ES256", "kid": "k", "url": URL});
        let jws = Jws::parse(&body(&key.jws(&header, b"not json"))).unwrap();
        let err = assert_kind(jws.payload_json::<Value>(), ErrorKind::Malformed);
        assert!(err.detail.contains("payload"), "{err}");

        let jws = Jws::parse(&body(&key.jws(&header, br#"{"a":1,"a":2}"#))).unwrap();
        let err = assert_kind(jws.payload_json::<Value>(), ErrorKind::Malformed);
        assert!(err.detail.contains("duplicate"), "{err}");
    }

    /// An EAB over `payload_jwk` with `header`, MACed with `mac_key`.
    fn eab(header: &Value, payload_jwk: &Value, mac_key: &[u8]) -> Value {
        let protected = b64(header.to_string().as_bytes());
        let payload = b64(payload_jwk.to_string().as_bytes());
        let key = hmac::Key::new(hmac::HMAC_SHA256, mac_key);
        let tag = hmac::sign(&key, format!("{protected}.{payload}").as_bytes());
        json!({"protected": protected, "payload": payload, "signature": b64(tag.as_ref())})
    }

    const MAC_KEY: &[u8] = b"an admin-issued 32-byte HMAC key";

    fn lookup(kid: &str) -> Option<Vec<u8>> {
        (kid == "kid-1").then(|| MAC_KEY.to_vec())
    }

    #[test]
    fn eab_happy_path_returns_the_kid() {
        let account = TestKey::p256();
        let header = json!({"alg": "HS256", "kid": "kid-1", "url": URL});
        let binding = eab(&header, &account.jwk(), MAC_KEY);
        let kid =
            verify_external_account_binding(&binding, &account.account_key(), URL, lookup).unwrap();
        assert_eq!(kid, "kid-1");

        // The two-step form, for callers that fetch the MAC key asynchronously.
        let parsed = ExternalAccountBinding::parse(&binding, &account.account_key(), URL).unwrap();
        assert_eq!(parsed.kid, "kid-1");
        parsed.verify(MAC_KEY).unwrap();
    }

    #[test]
    fn eab_wrong_mac_or_unknown_kid_is_unauthorized() {
        let account = TestKey::p256();
        let key = account.account_key();
        let header = json!({"alg": "HS256", "kid": "kid-1", "url": URL});
        let forged = eab(&header, &account.jwk(), b"a guessed key");
        assert_kind(
            verify_external_account_binding(&forged, &key, URL, lookup),
            ErrorKind::Unauthorized,
        );

        let header = json!({"alg": "HS256", "kid": "kid-2", "url": URL});
        let unknown = eab(&header, &account.jwk(), MAC_KEY);
        let err = assert_kind(
            verify_external_account_binding(&unknown, &key, URL, lookup),
            ErrorKind::Unauthorized,
        );
        assert!(err.detail.contains("unknown"), "{err}");
    }

    #[test]
    fn eab_shape_errors_are_malformed() {
        let account = TestKey::p256();
        let key = account.account_key();

        let with_nonce = json!({"alg": "HS256", "kid": "kid-1", "url": URL, "nonce": "n"});
        let err = assert_kind(
            verify_external_account_binding(
                &eab(&with_nonce, &account.jwk(), MAC_KEY),
                &key,
                URL,
                lookup,
            ),
            ErrorKind::Malformed,
        );
        assert!(err.detail.contains("nonce"), "{err}");

        let header = json!({"alg": "HS256", "kid": "kid-1", "url": URL});
        let other_key = TestKey::p256().jwk();
        let err = assert_kind(
            verify_external_account_binding(&eab(&header, &other_key, MAC_KEY), &key, URL, lookup),
            ErrorKind::Malformed,
        );
        assert!(err.detail.contains("payload"), "{err}");

        let wrong_url = json!({"alg": "HS256", "kid": "kid-1", "url": "https://acme.test/other"});
        let err = assert_kind(
            verify_external_account_binding(
                &eab(&wrong_url, &account.jwk(), MAC_KEY),
                &key,
                URL,
                lookup,
            ),
            ErrorKind::Malformed,
        );
        assert!(err.detail.contains("url"), "{err}");

        let no_kid = json!({"alg": "HS256", "url": URL});
        assert_kind(
            verify_external_account_binding(
                &eab(&no_kid, &account.jwk(), MAC_KEY),
                &key,
                URL,
                lookup,
            ),
            ErrorKind::Malformed,
        );

        let signed = json!({"alg": "ES256", "kid": "kid-1", "url": URL});
        assert_kind(
            verify_external_account_binding(
                &eab(&signed, &account.jwk(), MAC_KEY),
                &key,
                URL,
                lookup,
            ),
            ErrorKind::BadSignatureAlgorithm,
        );

        // Shape errors come before the lookup: no MAC key is fetched for them.
        let mut looked_up = false;
        let _ = verify_external_account_binding(
            &eab(&with_nonce, &account.jwk(), MAC_KEY),
            &key,
            URL,
            |_| {
                looked_up = true;
                None
            },
        );
        assert!(!looked_up);
    }

    #[test]
    fn eab_accepts_hs384_and_hs512() {
        let account = TestKey::ed25519();
        for (alg, mac) in [("HS384", &hmac::HMAC_SHA384), ("HS512", &hmac::HMAC_SHA512)] {
            let header = json!({"alg": alg, "kid": "kid-1", "url": URL});
            let protected = b64(header.to_string().as_bytes());
            let payload = b64(account.jwk().to_string().as_bytes());
            let tag = hmac::sign(
                &hmac::Key::new(*mac, MAC_KEY),
                format!("{protected}.{payload}").as_bytes(),
            );
            let binding =
                json!({"protected": protected, "payload": payload, "signature": b64(tag.as_ref())});
            let kid =
                verify_external_account_binding(&binding, &account.account_key(), URL, lookup)
                    .unwrap();
            assert_eq!(kid, "kid-1");
        }
    }
}
