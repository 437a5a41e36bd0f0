//! tls-alpn-01 (RFC 8737; RFC 8738 §6 for IP identifiers): a TLS handshake
//! offering only ALPN `acme-tls/1`, then checks on the certificate the host
//! presented: exactly one SAN naming the identifier, and a critical
//! acmeIdentifier extension holding SHA-256 of the key authorization.
//! Certificates are not verified against any root (RFC 8737 §3 does not ask
//! for it; the extension is the proof).

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, DnsName, ServerName, UnixTime};
use tokio_rustls::TlsConnector;
use x509_parser::extensions::GeneralName;

use super::http01::tls_failure;
use super::target::Host;
use super::{Failure, Validator, sha256};
use crate::error::{Error, ErrorKind};
use crate::policy::{Identifier, IdentifierKind};

/// The ALPN protocol of RFC 8737 §6.2.
pub(super) const ACME_TLS_1: &[u8] = b"acme-tls/1";

/// id-pe-acmeIdentifier (RFC 8737 §6.1).
const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

/// A TLS 1.2+ client (ring provider) that accepts any certificate chain but
/// still checks handshake signatures against the presented key, offers
/// `alpn`, and never resumes sessions (each validation must see the host's
/// current certificate).
pub(super) fn client_config(alpn: Vec<Vec<u8>>) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AcceptAnyCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::internal("building the validation TLS client", e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

impl Validator {
    pub(super) async fn tls_alpn01(
        &self,
        identifier: &Identifier,
        key_authorization: &str,
    ) -> Result<(), Failure> {
        let (host, sni) = match (identifier.kind, identifier.ip_addr()) {
            (IdentifierKind::Ip, Some(ip)) => (Host::Ip(ip), reverse_dns_name(ip)),
            _ => (
                Host::Name(identifier.value.clone()),
                identifier.value.clone(),
            ),
        };
        let purpose = format!(
            "tls-alpn-01 validation of {} on port {}",
            identifier.value, self.tlsalpn01_port
        );
        let server_name = DnsName::try_from(sni)
            .map(|n| ServerName::DnsName(n.to_owned()))
            .map_err(|_| {
                Failure::permanent(
                    ErrorKind::Malformed,
                    format!("{} cannot be sent as a TLS server name", identifier.value),
                )
            })?;

        let (tcp, addr) = self.connect(&host, self.tlsalpn01_port, &purpose).await?;
        let tls = TlsConnector::from(self.alpn_client.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|e| tls_failure(&e, addr, &purpose))?;
        let (_, connection) = tls.get_ref();

        let unauthorized = |why: String| {
            Failure::permanent(
                ErrorKind::Unauthorized,
                format!(
                    "the TLS server at {addr} {why} (tls-alpn-01 for {}, RFC 8737 §3)",
                    identifier.value
                ),
            )
        };
        if connection.alpn_protocol() != Some(ACME_TLS_1) {
            return Err(unauthorized(
                "did not negotiate the acme-tls/1 protocol".to_string(),
            ));
        }
        let leaf = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .ok_or_else(|| unauthorized("presented no certificate".to_string()))?;
        check_certificate(leaf.as_ref(), identifier, &sha256(key_authorization))
            .map_err(unauthorized)
    }
}

/// The certificate checks of RFC 8737 §3, as the reason it fails.
fn check_certificate(der: &[u8], identifier: &Identifier, digest: &[u8; 32]) -> Result<(), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| "presented a certificate that cannot be parsed".to_string())?;

    let san = cert
        .subject_alternative_name()
        .map_err(|_| "presented a certificate with a malformed subjectAltName".to_string())?
        .ok_or_else(|| {
            format!(
                "presented a certificate without a subjectAltName; it must name only {}",
                identifier.value
            )
        })?;
    let names = &san.value.general_names;
    let matches = match (names.as_slice(), identifier.ip_addr()) {
        ([GeneralName::DNSName(name)], None) => name
            .trim_end_matches('.')
            .eq_ignore_ascii_case(&identifier.value),
        ([GeneralName::IPAddress(bytes)], Some(IpAddr::V4(v4))) => *bytes == v4.octets().as_slice(),
        ([GeneralName::IPAddress(bytes)], Some(IpAddr::V6(v6))) => *bytes == v6.octets().as_slice(),
        _ => false,
    };
    if !matches {
        return Err(format!(
            "presented a certificate with {} subjectAltName entries; it must contain exactly one, {}",
            names.len(),
            identifier.value
        ));
    }

    let mut acme = cert
        .extensions()
        .iter()
        .filter(|e| e.oid.to_id_string() == ACME_IDENTIFIER_OID);
    let extension = acme.next().ok_or_else(|| {
        "presented a certificate without the acmeIdentifier extension".to_string()
    })?;
    if acme.next().is_some() {
        return Err(
            "presented a certificate with more than one acmeIdentifier extension".to_string(),
        );
    }
    if !extension.critical {
        return Err(
            "presented an acmeIdentifier extension that is not marked critical".to_string(),
        );
    }
    // extnValue holds the DER of `Authorization ::= OCTET STRING (SIZE (32))`:
    // tag 0x04, length 0x20, then the digest. DER has exactly one encoding.
    let mut expected = Vec::with_capacity(34);
    expected.extend_from_slice(&[0x04, 0x20]);
    expected.extend_from_slice(digest);
    if extension.value != expected.as_slice() {
        return Err("presented an acmeIdentifier extension that does not hold SHA-256 of the key authorization".to_string());
    }
    Ok(())
}

/// RFC 8738 §6: the SNI for an IP identifier is its reverse-DNS name.
fn reverse_dns_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut labels: Vec<String> = Vec::with_capacity(33);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0x0f));
                labels.push(format!("{:x}", byte >> 4));
            }
            labels.push("ip6.arpa".to_string());
            labels.join(".")
        }
    }
}

/// Accepts any certificate: tls-alpn-01 proves control through the
/// acmeIdentifier extension, and self-signed certificates are the norm.
/// Handshake signatures are still verified against the leaf's public key, so
/// the peer holds the key of the certificate we then inspect.
///
/// rustls's own signature helpers parse the leaf with webpki, which rejects
/// the critical acmeIdentifier extension (RFC 8737 §3 requires it critical),
/// so the key is taken from the certificate with x509-parser instead.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AcceptAnyCertificate {
    fn verify_with_leaf_key(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
        tls13: bool,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        let public_key = &parsed.tbs_certificate.subject_pki.subject_public_key.data;
        let candidates = self
            .algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algorithms)| *algorithms)
            .ok_or(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ))?;
        // TLS 1.3 schemes name one algorithm; TLS 1.2 ECDSA schemes leave the
        // curve open, so each candidate is tried (as rustls does).
        let candidates = if tls13 {
            candidates.get(..1).unwrap_or_default()
        } else {
            candidates
        };
        if candidates.iter().any(|alg| {
            alg.verify_signature(public_key, message, dss.signature())
                .is_ok()
        }) {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature,
            ))
        }
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_with_leaf_key(message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_with_leaf_key(message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{ChallengeType, Validator, sha256};
    use super::*;

    const KEY_AUTH: &str = "tok.thumbprint";

    /// Serves tls-alpn-01 for `sans` with an acmeIdentifier over `digest`, and
    /// returns a validator pointed at it with `name` resolving to it.
    async fn lab(
        sans: &[&str],
        digest: Option<[u8; 32]>,
        alpn: bool,
    ) -> (crate::zone::authoritative::AuthoritativeServer, Validator) {
        lab_with(sans, digest, alpn, TlsQuirks::default()).await
    }

    async fn lab_with(
        sans: &[&str],
        digest: Option<[u8; 32]>,
        alpn: bool,
        quirks: TlsQuirks,
    ) -> (crate::zone::authoritative::AuthoritativeServer, Validator) {
        let dns = lab_dns().await;
        let addr = serve_tls_alpn(sans, digest, alpn, quirks).await;
        dns.set_a("www.example.com", &[addr.ip()]);
        let mut config = lab_config(&dns);
        config.tlsalpn01_port = addr.port();
        let v = Validator::new(&config).unwrap();
        (dns, v)
    }

    async fn validate(v: &Validator, identifier: &Identifier) -> Result<(), Error> {
        v.validate(ChallengeType::TlsAlpn01, identifier, "tok", KEY_AUTH, "")
            .await
    }

    #[tokio::test]
    async fn correct_certificate_is_valid() {
        let (_dns, v) = lab(&["www.example.com"], Some(sha256(KEY_AUTH)), true).await;
        validate(&v, &Identifier::dns("www.example.com").unwrap())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn tls12_only_server_is_valid() {
        let quirks = TlsQuirks {
            tls12_only: true,
            ..TlsQuirks::default()
        };
        let (_dns, v) = lab_with(&["www.example.com"], Some(sha256(KEY_AUTH)), true, quirks).await;
        validate(&v, &Identifier::dns("www.example.com").unwrap())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn server_without_the_certificate_key_fails_the_handshake() {
        for tls12_only in [false, true] {
            let quirks = TlsQuirks {
                tls12_only,
                wrong_key: true,
            };
            let (_dns, v) =
                lab_with(&["www.example.com"], Some(sha256(KEY_AUTH)), true, quirks).await;
            let err = validate(&v, &Identifier::dns("www.example.com").unwrap())
                .await
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::Tls, "tls12_only={tls12_only}: {err:?}");
        }
    }

    #[tokio::test]
    async fn ip_identifier_uses_its_address_san() {
        let (_dns, v) = lab(&["127.0.0.1"], Some(sha256(KEY_AUTH)), true).await;
        validate(&v, &Identifier::ip("127.0.0.1").unwrap())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn wrong_digest_is_unauthorized() {
        let (_dns, v) = lab(&["www.example.com"], Some(sha256("other.key-auth")), true).await;
        let err = validate(&v, &Identifier::dns("www.example.com").unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unauthorized);
        assert!(
            err.detail.contains("does not hold SHA-256"),
            "{}",
            err.detail
        );
    }

    #[tokio::test]
    async fn missing_extension_is_unauthorized() {
        let (_dns, v) = lab(&["www.example.com"], None, true).await;
        let err = validate(&v, &Identifier::dns("www.example.com").unwrap())
            .await
            .unwrap_err();
        assert!(
            err.detail.contains("without the acmeIdentifier"),
            "{}",
            err.detail
        );
    }

    #[tokio::test]
    async fn server_without_acme_alpn_is_unauthorized() {
        let (_dns, v) = lab(&["www.example.com"], Some(sha256(KEY_AUTH)), false).await;
        let err = validate(&v, &Identifier::dns("www.example.com").unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unauthorized);
        assert!(err.detail.contains("acme-tls/1"), "{}", err.detail);
    }

    #[tokio::test]
    async fn extra_san_is_unauthorized() {
        let (_dns, v) = lab(
            &["www.example.com", "evil.example.com"],
            Some(sha256(KEY_AUTH)),
            true,
        )
        .await;
        let err = validate(&v, &Identifier::dns("www.example.com").unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unauthorized);
        assert!(err.detail.contains("2 subjectAltName"), "{}", err.detail);
    }

    #[test]
    fn reverse_names_follow_rfc8738() {
        assert_eq!(
            reverse_dns_name("1.2.3.4".parse().unwrap()),
            "4.3.2.1.in-addr.arpa"
        );
        assert_eq!(
            reverse_dns_name("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }
}
