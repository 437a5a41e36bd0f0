//! The hub's own CA (Boulder's CA): turns a checked request into a signed
//! certificate or CRL. Owns CSR parsing ([`csr`]), the local root +
//! intermediate ([`local`]), and certificate identifiers (serials, RFC 9773
//! ARI ids). Where an instance's certificates come from (this CA or upstream
//! CA accounts) is `issuance/`'s business.
//! It only signs: it never decides who may get what (that is `policy/` and
//! `orders/`), never stores anything but its own key files, and never lets a
//! CSR's extensions reach a certificate — only the CSR's public key is used.

pub mod csr;
pub mod local;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER;

use crate::error::Error;

pub use csr::{KeyKind, KeySummary, ParsedCsr, parse_csr};
pub use local::{CaError, IssuedCertificate, LeafRequest, LocalCa, RevokedEntry};

/// RFC 5280 §4.1.2.2: serials are at most 20 octets. One more for the leading
/// 0x00 a positive INTEGER needs when its high bit is set.
const MAX_SERIAL_CONTENT_LEN: usize = 21;
/// Key identifiers are 20 bytes in practice (RFC 7093 / SHA-1); allow room for
/// other CAs' choices but refuse absurd input.
const MAX_KEY_IDENTIFIER_LEN: usize = 64;

/// The ARI certificate identifier (RFC 9773 §4.1):
/// `base64url(AKI keyIdentifier) "." base64url(serial)`, no padding, where the
/// serial is the DER INTEGER's content bytes including any leading 0x00.
pub fn ari_cert_id(cert_der: &[u8]) -> Result<String, Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|_| Error::malformed("the certificate is not valid DER X.509"))?;
    let aki = cert
        .get_extension_unique(&OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
        .map_err(|_| Error::malformed("the certificate has a duplicate authority key identifier"))?
        .and_then(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref(),
            _ => None,
        })
        .ok_or_else(|| {
            // RFC 9773 §4.1: the identifier cannot be built without keyIdentifier.
            Error::malformed("the certificate has no authority key identifier")
        })?;
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(aki.0),
        URL_SAFE_NO_PAD.encode(cert.raw_serial())
    ))
}

/// Parses an ARI certificate identifier (RFC 9773 §4.1) into the authority key
/// identifier and the serial (DER INTEGER content bytes, as [`certificate_serial`]
/// returns them).
pub fn parse_ari_cert_id(id: &str) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let bad = |why: &str| {
        Error::malformed(format!(
            "invalid certificate identifier (RFC 9773 §4.1: base64url(AKI).base64url(serial)): {why}"
        ))
    };
    let (aki_part, serial_part) = id.split_once('.').ok_or_else(|| bad("missing \".\""))?;
    if serial_part.contains('.') {
        return Err(bad("more than one \".\""));
    }
    let aki = URL_SAFE_NO_PAD
        .decode(aki_part)
        .map_err(|_| bad("the key identifier is not unpadded base64url"))?;
    let serial = URL_SAFE_NO_PAD
        .decode(serial_part)
        .map_err(|_| bad("the serial is not unpadded base64url"))?;
    if aki.is_empty() || aki.len() > MAX_KEY_IDENTIFIER_LEN {
        return Err(bad("the key identifier has an invalid length"));
    }
    check_serial_content(&serial).map_err(bad)?;
    Ok((aki, serial))
}

/// The serial of a certificate: the DER INTEGER's content bytes (a leading
/// 0x00 is kept when the high bit of the next byte is set), the form ARI ids
/// and CRL lookups use.
pub fn certificate_serial(cert_der: &[u8]) -> Result<Vec<u8>, Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|_| Error::malformed("the certificate is not valid DER X.509"))?;
    Ok(cert.raw_serial().to_vec())
}

/// The DER INTEGER content bytes the CA writes for a serial given as unsigned
/// big-endian bytes (e.g. the 16 random bytes of a [`LeafRequest`]): leading
/// zeros dropped, one 0x00 prepended when the high bit is set (X.690 §8.3.2,
/// RFC 5280 §4.1.2.2 requires a positive serial). Equal to
/// [`certificate_serial`] of the signed certificate.
pub fn serial_der_content(unsigned: &[u8]) -> Vec<u8> {
    let first_nonzero = unsigned.iter().position(|b| *b != 0);
    let magnitude = match first_nonzero {
        Some(i) => &unsigned[i..],
        None => return vec![0],
    };
    let mut out = Vec::with_capacity(magnitude.len() + 1);
    if magnitude[0] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(magnitude);
    out
}

/// Lowercase hex without separators, the form serials take in URLs, logs and
/// the admin API.
pub fn serial_hex(serial: &[u8]) -> String {
    use std::fmt::Write as _;
    serial
        .iter()
        .fold(String::with_capacity(serial.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Parses [`serial_hex`] output (either case; `:` separators allowed, as
/// OpenSSL prints them) back into bytes.
pub fn parse_serial_hex(hex: &str) -> Result<Vec<u8>, Error> {
    let digits: Vec<u8> = hex.bytes().filter(|b| *b != b':').collect();
    let bad = || Error::malformed(format!("{hex:?} is not a hexadecimal serial number"));
    if digits.is_empty() || digits.len() % 2 != 0 || digits.len() > 2 * MAX_SERIAL_CONTENT_LEN {
        return Err(bad());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let high = (pair[0] as char).to_digit(16).ok_or_else(bad)?;
            let low = (pair[1] as char).to_digit(16).ok_or_else(bad)?;
            Ok((high * 16 + low) as u8)
        })
        .collect()
}

/// A serial as DER INTEGER content must be minimal (X.690 §8.3.2) and positive
/// (RFC 5280 §4.1.2.2), so one certificate has exactly one identifier.
fn check_serial_content(serial: &[u8]) -> Result<(), &'static str> {
    match serial {
        [] => Err("the serial is empty"),
        s if s.len() > MAX_SERIAL_CONTENT_LEN => Err("the serial is longer than 20 octets"),
        [first, ..] if first & 0x80 != 0 => Err("the serial is negative"),
        [0, next, ..] if next & 0x80 == 0 => Err("the serial has a redundant leading zero"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// RFC 9773 §4.1 example: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4,
    /// serial 00:87:65:43:21.
    const RFC_AKI: [u8; 20] = [
        0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE,
        0x2C, 0xDE, 0x01, 0xC8, 0xD4,
    ];
    const RFC_SERIAL: [u8; 5] = [0x00, 0x87, 0x65, 0x43, 0x21];
    const RFC_ID: &str = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";

    #[test]
    fn ari_id_matches_the_rfc_9773_example() {
        let (aki, serial) = parse_ari_cert_id(RFC_ID).unwrap();
        assert_eq!(aki, RFC_AKI);
        assert_eq!(serial, RFC_SERIAL);
        // The same bytes re-encode to the same id.
        let reencoded = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&aki),
            URL_SAFE_NO_PAD.encode(&serial)
        );
        assert_eq!(reencoded, RFC_ID);
    }

    #[test]
    fn ari_id_of_a_real_certificate_round_trips() {
        // A certificate with serial 0x87654321 (high bit set: content 00 87 65 43 21)
        // issued by a CA whose SKI is the RFC example's AKI.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(RFC_AKI.to_vec());
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example.com".to_string()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x87, 0x65, 0x43, 0x21]));
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&leaf_key, &issuer).unwrap();

        assert_eq!(ari_cert_id(cert.der()).unwrap(), RFC_ID);
        assert_eq!(certificate_serial(cert.der()).unwrap(), RFC_SERIAL);
        assert_eq!(serial_der_content(&[0x87, 0x65, 0x43, 0x21]), RFC_SERIAL);
    }

    #[test]
    fn bad_ari_ids_are_malformed() {
        for bad in [
            "",
            "nodot",
            "a.b.c",
            ".AIdlQyE",
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.",
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ=.AIdlQyE",
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE=",
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.h2VDIQ", // 87 65 43 21: negative
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AAFlQyE", // 00 01 ...: not minimal
            "a+b/.AIdlQyE",
        ] {
            let err = parse_ari_cert_id(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Malformed, "{bad:?} accepted");
        }
        assert_eq!(
            ari_cert_id(b"garbage").unwrap_err().kind,
            ErrorKind::Malformed
        );
    }

    #[test]
    fn serial_helpers_agree() {
        assert_eq!(serial_der_content(&[0, 0, 0x12]), vec![0x12]);
        assert_eq!(serial_der_content(&[0xff, 0x01]), vec![0, 0xff, 0x01]);
        assert_eq!(serial_der_content(&[0, 0]), vec![0]);
        assert_eq!(serial_hex(&[0x00, 0xab, 0x01]), "00ab01");
        assert_eq!(parse_serial_hex("00AB01").unwrap(), vec![0x00, 0xab, 0x01]);
        assert_eq!(
            parse_serial_hex("00:ab:01").unwrap(),
            vec![0x00, 0xab, 0x01]
        );
        for bad in ["", "abc", "zz", "é1"] {
            assert!(parse_serial_hex(bad).is_err(), "{bad:?} accepted");
        }
    }
}
