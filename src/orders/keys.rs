//! Comparing an account's JWK with a public key taken from a CSR or a
//! certificate (SubjectPublicKeyInfo), for "the CSR key must not be the
//! account key" (RFC 8555 §11.1) and revocation by certificate key (§7.6).

use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

fn b64_field(jwk: &serde_json::Value, name: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let text = jwk.get(name)?.as_str()?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// True when `spki_der` holds the same public key as the JWK (JSON text).
pub fn spki_matches_jwk(spki_der: &[u8], jwk: &str) -> bool {
    let Ok(jwk) = serde_json::from_str::<serde_json::Value>(jwk) else {
        return false;
    };
    let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(spki_der) else {
        return false;
    };
    let raw = spki.subject_public_key.data.as_ref();
    match jwk.get("kty").and_then(|k| k.as_str()) {
        Some("EC") => {
            let (Some(x), Some(y)) = (b64_field(&jwk, "x"), b64_field(&jwk, "y")) else {
                return false;
            };
            let mut point = Vec::with_capacity(1 + x.len() + y.len());
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            raw == point.as_slice()
        }
        Some("RSA") => {
            let (Some(n), Some(e)) = (b64_field(&jwk, "n"), b64_field(&jwk, "e")) else {
                return false;
            };
            match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) => {
                    strip_zeros(rsa.modulus) == strip_zeros(&n)
                        && strip_zeros(rsa.exponent) == strip_zeros(&e)
                }
                _ => false,
            }
        }
        Some("OKP") => b64_field(&jwk, "x").is_some_and(|x| raw == x.as_slice()),
        _ => false,
    }
}
