//! CSR parsing and checks (RFC 2986, as sent in an RFC 8555 §7.4 finalize).
//! Owns: turning DER from a client into identifiers + an acceptable public key.
//! Never: trusts a CSR's extensions beyond its subjectAltName, or panics on input;
//! the CA signs only the public key that comes out of here.

use std::fmt;
use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_PKCS1_SHA1WITHRSA, OID_SHA1_WITH_RSA, OID_SIG_ED25519,
    OID_X509_EXT_SUBJECT_ALT_NAME,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::error::{Error, ErrorKind};
use crate::policy::Identifier;

/// What the hub accepts, said the same way in every key rejection.
const ACCEPTED_KEYS: &str = "accepted keys are RSA 2048 to 8192 bits, ECDSA P-256 and ECDSA P-384";
const RSA_MIN_BITS: u32 = 2048;
const RSA_MAX_BITS: u32 = 8192;

/// A CSR that passed every check: its signature verified, its key acceptable,
/// its names valid identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCsr {
    /// Sorted and deduplicated, from the subjectAltName dNSName (wildcards
    /// allowed) and iPAddress (RFC 8738 §3) entries.
    pub identifiers: Vec<Identifier>,
    /// The CSR's SubjectPublicKeyInfo, DER: the only part of the CSR that
    /// reaches the certificate.
    pub spki_der: Vec<u8>,
    pub key: KeySummary,
}

/// The kind and size of an accepted public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeySummary {
    pub kind: KeyKind,
}

/// The public key types the CA issues for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// rsaEncryption (RFC 8017), modulus size in bits.
    Rsa { bits: u32 },
    /// id-ecPublicKey on secp256r1 (RFC 5480).
    EcP256,
    /// id-ecPublicKey on secp384r1 (RFC 5480).
    EcP384,
}

/// Parses a DER CSR (RFC 2986) as sent in finalize (RFC 8555 §7.4), verifies
/// its self-signature and checks its key and names. Every failure is
/// `ErrorKind::BadCsr` with a detail that says what to change.
pub fn parse_csr(der: &[u8]) -> Result<ParsedCsr, Error> {
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|_| bad_csr("the CSR is not a valid DER-encoded PKCS#10 request (RFC 2986)"))?;
    if !rest.is_empty() {
        return Err(bad_csr("the CSR has trailing data after the request"));
    }
    let info = &csr.certification_request_info;
    if info.version.0 != 0 {
        return Err(bad_csr(
            "the CSR version must be 1 (value 0, RFC 2986 §4.1)",
        ));
    }

    // Key first: a refused key type gets the list of accepted ones, not a
    // confusing signature error.
    let key = summarize_key(&info.subject_pki).map_err(bad_csr)?;

    let alg = &csr.signature_algorithm.algorithm;
    if *alg == OID_PKCS1_SHA1WITHRSA || *alg == OID_SHA1_WITH_RSA {
        return Err(bad_csr(
            "the CSR is signed with SHA-1; sign it with SHA-256 or stronger",
        ));
    }
    csr.verify_signature().map_err(|_| {
        bad_csr("the CSR signature does not verify with the CSR's own public key (RFC 2986 §3)")
    })?;

    let identifiers = identifiers_from_san(&csr)?;
    check_common_names(&csr, &identifiers)?;

    Ok(ParsedCsr {
        identifiers,
        spki_der: info.subject_pki.raw.to_vec(),
        key,
    })
}

impl KeySummary {
    /// Classifies a DER SubjectPublicKeyInfo, refusing key types the CA does
    /// not issue for. The detail says which types are accepted.
    pub fn from_spki_der(spki_der: &[u8]) -> Result<Self, Error> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|_| bad_csr("the public key is not a valid SubjectPublicKeyInfo"))?;
        if !rest.is_empty() {
            return Err(bad_csr("the public key has trailing data"));
        }
        summarize_key(&spki).map_err(bad_csr)
    }

    /// RSA keys also get keyEncipherment (RFC 5280 §4.2.1.3): TLS 1.2 RSA key
    /// exchange needs it.
    pub fn is_rsa(&self) -> bool {
        matches!(self.kind, KeyKind::Rsa { .. })
    }
}

impl fmt::Display for KeySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            KeyKind::Rsa { bits } => write!(f, "RSA {bits}"),
            KeyKind::EcP256 => f.write_str("ECDSA P-256"),
            KeyKind::EcP384 => f.write_str("ECDSA P-384"),
        }
    }
}

/// The CSR's public key in the form rcgen signs over: only the algorithm and
/// the key bits, so nothing else from the CSR can reach the certificate.
pub(crate) struct CertifiedPublicKey {
    pub(crate) summary: KeySummary,
    algorithm: &'static rcgen::SignatureAlgorithm,
    key_bits: Vec<u8>,
}

impl CertifiedPublicKey {
    /// Parses and re-checks a SubjectPublicKeyInfo; the detail is for logs.
    pub(crate) fn from_spki_der(spki_der: &[u8]) -> Result<Self, String> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|_| "the public key is not a valid SubjectPublicKeyInfo".to_string())?;
        if !rest.is_empty() {
            return Err("the public key has trailing data".to_string());
        }
        let summary = summarize_key(&spki)?;
        // rcgen writes the SPKI's AlgorithmIdentifier from the algorithm's key
        // OIDs: rsaEncryption + NULL, or id-ecPublicKey + the named curve.
        let algorithm = match summary.kind {
            KeyKind::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
            KeyKind::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        };
        Ok(Self {
            summary,
            algorithm,
            key_bits: spki.subject_public_key.data.to_vec(),
        })
    }
}

impl rcgen::PublicKeyData for CertifiedPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.key_bits
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

fn bad_csr(detail: impl Into<String>) -> Error {
    Error::new(ErrorKind::BadCsr, detail)
}

/// Accepts RSA 2048–8192 and ECDSA P-256/P-384 (the keys every TLS stack and
/// `ring` verify); the detail names the refused key and the accepted ones.
fn summarize_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeySummary, String> {
    let algorithm = &spki.algorithm.algorithm;
    let key = spki.subject_public_key.data.as_ref();
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let bits = rsa_modulus_bits(spki)
            .ok_or_else(|| format!("the RSA public key cannot be parsed; {ACCEPTED_KEYS}"))?;
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(format!("the RSA key has {bits} bits; {ACCEPTED_KEYS}"));
        }
        return Ok(KeySummary {
            kind: KeyKind::Rsa { bits },
        });
    }
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        // Uncompressed points only (SEC 1 §2.3.3): 0x04 || X || Y.
        let (kind, point_len) = match curve {
            Some(c) if c == OID_EC_P256 => (KeyKind::EcP256, 65),
            Some(c) if c == OID_NIST_EC_P384 => (KeyKind::EcP384, 97),
            Some(c) if c == OID_NIST_EC_P521 => {
                return Err(format!(
                    "ECDSA P-521 keys are not accepted; {ACCEPTED_KEYS}"
                ));
            }
            _ => {
                return Err(format!(
                    "the ECDSA key uses an unsupported curve; {ACCEPTED_KEYS}"
                ));
            }
        };
        if key.len() != point_len || key.first() != Some(&0x04) {
            return Err(format!(
                "the ECDSA public key must be an uncompressed point; {ACCEPTED_KEYS}"
            ));
        }
        return Ok(KeySummary { kind });
    }
    if *algorithm == OID_SIG_ED25519 {
        return Err(format!("Ed25519 keys are not accepted; {ACCEPTED_KEYS}"));
    }
    Err(format!(
        "the public key type ({algorithm}) is not accepted; {ACCEPTED_KEYS}"
    ))
}

/// The modulus size in bits, counted from its first set bit: x509-parser's
/// own `key_size` only handles a modulus with a leading zero byte.
fn rsa_modulus_bits(spki: &SubjectPublicKeyInfo<'_>) -> Option<u32> {
    let x509_parser::public_key::PublicKey::RSA(rsa) = spki.parsed().ok()? else {
        return None;
    };
    let start = rsa.modulus.iter().position(|b| *b != 0)?;
    let significant = &rsa.modulus[start..];
    let bytes = u32::try_from(significant.len()).ok()?;
    let lead = significant.first()?;
    Some((bytes - 1) * 8 + (8 - lead.leading_zeros()))
}

/// RFC 8555 §7.4: the CSR names the order's identifiers in subjectAltName.
fn identifiers_from_san(csr: &X509CertificationRequest<'_>) -> Result<Vec<Identifier>, Error> {
    let mut san_seen = false;
    let mut identifiers = Vec::new();
    let extensions = csr
        .certification_request_info
        .iter_attributes()
        .filter_map(|attr| match attr.parsed_attribute() {
            ParsedCriAttribute::ExtensionRequest(request) => Some(request.extensions.iter()),
            _ => None,
        })
        .flatten();
    for ext in extensions.filter(|ext| ext.oid == OID_X509_EXT_SUBJECT_ALT_NAME) {
        if san_seen {
            return Err(bad_csr(
                "the CSR requests the subjectAltName extension twice",
            ));
        }
        san_seen = true;
        let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() else {
            return Err(bad_csr(
                "the CSR's subjectAltName extension cannot be parsed",
            ));
        };
        for name in &san.general_names {
            identifiers.push(identifier_from_general_name(name)?);
        }
    }
    if identifiers.is_empty() {
        return Err(bad_csr(
            "the CSR has no subjectAltName names; list every identifier of the order as a \
             dNSName or iPAddress",
        ));
    }
    identifiers.sort();
    identifiers.dedup();
    Ok(identifiers)
}

fn identifier_from_general_name(name: &GeneralName<'_>) -> Result<Identifier, Error> {
    match name {
        GeneralName::DNSName(value) => Identifier::dns(value)
            .map_err(|e| bad_csr(format!("subjectAltName dNSName: {}", e.detail))),
        GeneralName::IPAddress(octets) => ip_from_octets(octets)
            .map(Identifier::from_ip)
            .ok_or_else(|| {
                bad_csr("a subjectAltName iPAddress must be 4 (IPv4) or 16 (IPv6) bytes")
            }),
        other => Err(bad_csr(format!(
            "the CSR's subjectAltName holds a {} entry; only dNSName and iPAddress are supported",
            general_name_kind(other)
        ))),
    }
}

fn ip_from_octets(octets: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(octets).ok().map(IpAddr::from)
}

fn general_name_kind(name: &GeneralName<'_>) -> &'static str {
    match name {
        GeneralName::OtherName(..) => "otherName",
        GeneralName::RFC822Name(_) => "rfc822Name (email)",
        GeneralName::DNSName(_) => "dNSName",
        GeneralName::X400Address(_) => "x400Address",
        GeneralName::DirectoryName(_) => "directoryName",
        GeneralName::EDIPartyName(_) => "ediPartyName",
        GeneralName::URI(_) => "uniformResourceIdentifier",
        GeneralName::IPAddress(_) => "iPAddress",
        GeneralName::RegisteredID(_) => "registeredID",
        GeneralName::Invalid(..) => "malformed",
    }
}

/// A CN is optional, but if present it must be one of the SAN names (the
/// Baseline Requirements §7.1.4.3 rule), compared case-insensitively.
fn check_common_names(
    csr: &X509CertificationRequest<'_>,
    identifiers: &[Identifier],
) -> Result<(), Error> {
    for cn in csr.certification_request_info.subject.iter_common_name() {
        let value = cn
            .as_str()
            .map_err(|_| bad_csr("the CSR's commonName is not a readable string"))?;
        let normalized = match value.parse::<IpAddr>() {
            Ok(ip) => Some(Identifier::from_ip(ip)),
            Err(_) => Identifier::dns(value).ok(),
        };
        if !normalized.is_some_and(|id| identifiers.contains(&id)) {
            return Err(bad_csr(format!(
                "the CSR's commonName {value:?} is not one of its subjectAltName names"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::IdentifierKind;

    /// A CSR as ACME clients send it (instant-acme clears rcgen's default CN).
    fn csr_for(names: &[&str], key: &rcgen::KeyPair) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.serialize_request(key).unwrap().der().to_vec()
    }

    fn assert_bad_csr(der: &[u8], needle: &str) {
        let err = parse_csr(der).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadCsr, "{err}");
        assert!(
            err.detail.contains(needle),
            "detail {:?} lacks {needle:?}",
            err.detail
        );
    }

    #[test]
    fn names_come_out_sorted_normalized_and_deduplicated() {
        let key = rcgen::KeyPair::generate().unwrap();
        let der = csr_for(
            &[
                "WWW.Example.com",
                "*.example.com",
                "192.0.2.1",
                "www.example.com",
                "2001:db8::1",
            ],
            &key,
        );
        let csr = parse_csr(&der).unwrap();
        let values: Vec<(IdentifierKind, &str)> = csr
            .identifiers
            .iter()
            .map(|i| (i.kind, i.value.as_str()))
            .collect();
        assert_eq!(
            values,
            vec![
                (IdentifierKind::Dns, "*.example.com"),
                (IdentifierKind::Dns, "www.example.com"),
                (IdentifierKind::Ip, "192.0.2.1"),
                (IdentifierKind::Ip, "2001:db8::1"),
            ]
        );
        assert_eq!(csr.key.kind, KeyKind::EcP256);
        assert_eq!(
            csr.spki_der,
            rcgen::PublicKeyData::subject_public_key_info(&key)
        );
    }

    #[test]
    fn openssl_rsa_and_p384_csrs_are_accepted() {
        let rsa = parse_csr(include_bytes!("testdata/rsa2048.der")).unwrap();
        assert_eq!(rsa.key.kind, KeyKind::Rsa { bits: 2048 });
        assert_eq!(rsa.identifiers.len(), 2);
        let p384 = parse_csr(include_bytes!("testdata/p384.der")).unwrap();
        assert_eq!(p384.key.kind, KeyKind::EcP384);
        assert_eq!(p384.identifiers[1], Identifier::ip("192.0.2.7").unwrap());
    }

    #[test]
    fn weak_or_unsupported_keys_are_refused_with_the_accepted_list() {
        assert_bad_csr(
            include_bytes!("testdata/rsa1024.der"),
            "RSA key has 1024 bits",
        );
        assert_bad_csr(include_bytes!("testdata/p521.der"), "P-521");
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert_bad_csr(&csr_for(&["ed.example.com"], &ed), "Ed25519");
        assert_bad_csr(&csr_for(&["ed.example.com"], &ed), ACCEPTED_KEYS);
    }

    #[test]
    fn sha1_signed_csr_is_refused() {
        assert_bad_csr(include_bytes!("testdata/rsa2048-sha1.der"), "SHA-1");
    }

    #[test]
    fn tampered_signature_is_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut der = csr_for(&["a.example.com"], &key);
        // The signature BIT STRING is last; flip a bit inside it.
        let last = der.len() - 5;
        der[last] ^= 0x01;
        assert_bad_csr(&der, "signature does not verify");
    }

    #[test]
    fn swapped_name_with_someone_elses_signature_is_refused() {
        // Changing a name after signing must break the signature.
        let key = rcgen::KeyPair::generate().unwrap();
        let der = csr_for(&["aaaa.example.com"], &key);
        let pos = der.windows(4).position(|w| w == b"aaaa").unwrap();
        let mut tampered = der.clone();
        tampered[pos..pos + 4].copy_from_slice(b"bbbb");
        assert_bad_csr(&tampered, "signature does not verify");
    }

    #[test]
    fn common_name_must_be_a_san() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example.com".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "evil.example.net");
        let der = params.serialize_request(&key).unwrap().der().to_vec();
        assert_bad_csr(&der, "commonName \"evil.example.net\"");

        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "A.Example.COM");
        let der = params.serialize_request(&key).unwrap().der().to_vec();
        assert!(
            parse_csr(&der).is_ok(),
            "CN differing only in case must pass"
        );
    }

    #[test]
    fn csr_without_san_or_with_email_san_is_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let der = params.serialize_request(&key).unwrap().der().to_vec();
        assert_bad_csr(&der, "no subjectAltName");

        let mut params = rcgen::CertificateParams::new(vec!["a.example.com".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name(
            "root@example.com".try_into().unwrap(),
        ));
        let der = params.serialize_request(&key).unwrap().der().to_vec();
        assert_bad_csr(&der, "rfc822Name");

        assert_bad_csr(&csr_for(&["not_a_host.example"], &key), "dNSName");

        // rcgen's default subject is a CN that names nothing: refused.
        let params = rcgen::CertificateParams::new(vec!["a.example.com".to_string()]).unwrap();
        let der = params.serialize_request(&key).unwrap().der().to_vec();
        assert_bad_csr(&der, "rcgen self signed cert");
    }

    #[test]
    fn garbage_never_panics_and_is_bad_csr() {
        let key = rcgen::KeyPair::generate().unwrap();
        let good = csr_for(&["a.example.com"], &key);
        assert_bad_csr(b"", "not a valid DER");
        assert_bad_csr(b"\x30\x82\xff\xff garbage", "not a valid DER");
        let mut trailing = good.clone();
        trailing.push(0);
        assert_bad_csr(&trailing, "trailing data");
        // Every truncation and every single-byte corruption of a valid CSR is
        // either refused or (if the corruption is in an ignored spot) accepted,
        // but never panics.
        for len in 0..good.len() {
            assert!(parse_csr(&good[..len]).is_err());
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            let _ = parse_csr(&bad);
        }
    }
}
