//! Small shared helpers: the clock and randomness.

use ring::rand::{SecureRandom, SystemRandom};

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS RNG failing is unrecoverable for a CA: nothing it issues would be safe.
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the operating system's random number generator failed");
    buf
}

/// A random, URL-safe identifier with 128 bits of entropy (22 characters).
pub fn random_id() -> String {
    b64(&random_bytes::<16>())
}

/// A URL-safe identifier that sorts (bytewise) by when it was made: the
/// milliseconds since the epoch in 11 hex digits, then 96 random bits
/// (16 characters). For the rows an issuance adds by the thousand (orders,
/// authorizations, challenges, certificates): a random key puts each new
/// row of every index on it on a page of its own, so a commit rewrote some
/// twenty pages an issuance; keys that grow over time land on the last
/// page of each index, which a group commit writes once. The ids name
/// resources, they are not secrets: every ACME request for one is signed
/// by the account that owns it.
pub fn ordered_id() -> String {
    let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    format!("{millis:011x}{}", b64(&random_bytes::<12>()))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// base64url without padding (RFC 8555 §6.1).
pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// RFC 3339 text for a unix timestamp, as ACME resources carry it.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Parses RFC 3339 text into a unix timestamp.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// PEM text (RFC 7468) of DER bytes under `label` ("CERTIFICATE", "PRIVATE KEY"):
/// base64 in lines of 64 characters.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 32);
    out.push_str(&format!("-----BEGIN {label}-----\n"));
    // Base64 is ASCII, so byte chunks are character chunks.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A short name of letters, digits, '-', '_' and '.' (1 to 64 characters):
/// what ACME profile names look like in practice.
pub fn is_token(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_url_safe() {
        let a = random_id();
        assert_eq!(a.len(), 22);
        assert_ne!(a, random_id());
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn ordered_ids_sort_by_time_and_are_url_safe() {
        let a = ordered_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = ordered_id();
        assert_eq!(a.len(), 27);
        assert!(a < b, "{a} sorts after {b}");
        assert_ne!(a[11..], b[11..]);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2026-11-22T07:00:00Z"), Some(1_795_330_800));
    }
}
