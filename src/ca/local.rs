//! The local CA: an ECDSA P-256 root and intermediate under `<data-dir>/ca/`,
//! issuing leaf certificates, the hub's own listener certificate, and CRLs.
//! The database holds the same four files, sealed ([`CaFiles`]; the hub
//! shares them between replicas and writes them here at start-up).
//! Owns its key files and keeps the intermediate key in memory only inside
//! [`LocalCa`]; the root key is read at start-up only to (re)create the
//! intermediate. It never builds certificate fields from a CSR: only the
//! public key comes from the client (a CSR's CA flag must never be copied).

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use ring::rand::{SecureRandom as _, SystemRandom};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime, UtcOffset};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

use super::csr::{CertifiedPublicKey, KeyKind};
use crate::error::Error;
use crate::policy::{Identifier, IdentifierKind};

const ROOT_CERT: &str = "root.pem";
const ROOT_KEY: &str = "root.key";
const INTERMEDIATE_CERT: &str = "intermediate.pem";
const INTERMEDIATE_KEY: &str = "intermediate.key";

const ROOT_VALIDITY: Duration = Duration::days(3652);
const INTERMEDIATE_VALIDITY: Duration = Duration::days(1826);
const LISTENER_VALIDITY: Duration = Duration::days(365);
/// CA and listener certificates start a little in the past so that a client
/// whose clock lags accepts them at once.
const BACKDATE: Duration = Duration::hours(1);
/// RFC 5280 §4.1.2.2: at most 20 octets.
const MAX_SERIAL_LEN: usize = 20;
/// RFC 5280 Appendix A: ub-common-name is 64 characters.
const MAX_COMMON_NAME_LEN: usize = 64;

/// The hub's own CA: root + intermediate, loaded from (or created in) a
/// directory. Signing happens with the intermediate.
pub struct LocalCa {
    root_pem: String,
    intermediate_pem: String,
    intermediate_der: CertificateDer<'static>,
    intermediate_not_after: OffsetDateTime,
    /// The intermediate's subjectKeyIdentifier: the AKI of everything it signs.
    intermediate_key_id: Vec<u8>,
    intermediate: Issuer<'static, KeyPair>,
}

/// What the CA needs to sign one leaf. Everything here was decided and stored
/// by the caller before signing (persist intent before side effects).
#[derive(Debug, Clone)]
pub struct LeafRequest<'a> {
    /// Unsigned big-endian serial (16 random bytes, chosen and stored by the
    /// caller); written as a positive INTEGER, so a set high bit gains a
    /// leading 0x00 in the certificate (see [`super::serial_der_content`]).
    pub serial: &'a [u8],
    /// The CSR's SubjectPublicKeyInfo ([`super::csr::ParsedCsr::spki_der`]).
    pub spki_der: &'a [u8],
    pub identifiers: &'a [Identifier],
    pub not_before: OffsetDateTime,
    /// Clamped to the intermediate's notAfter: a leaf never outlives its issuer.
    pub not_after: OffsetDateTime,
    /// The CRL distribution point URL (RFC 5280 §4.2.1.13); empty for none.
    pub crl_url: &'a str,
}

/// A signed leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub der: Vec<u8>,
    /// Leaf, then intermediate, PEM (the RFC 8555 §7.4.2 download).
    pub chain_pem: String,
    /// The validity actually written (whole seconds, UTC, clamped).
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// One revoked certificate on the CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The serial: unsigned bytes or DER INTEGER content, both encode alike.
    pub serial: Vec<u8>,
    pub revoked_at: OffsetDateTime,
    /// RFC 5280 §5.3.1 CRLReason code (0–6, 8–10).
    pub reason: u8,
}

/// Local CA failures. They are operator-facing (paths, causes) and map to a
/// generic `serverInternal` for ACME clients.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A CA file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A CA file exists but does not hold what it should.
    #[error("{}: {detail}", path.display())]
    Parse { path: PathBuf, detail: String },
    /// The CA files do not belong together (missing half of a pair, a key that
    /// is not the certificate's, an intermediate the root did not sign).
    #[error("{}: {detail}", path.display())]
    Inconsistent { path: PathBuf, detail: String },
    /// The caller asked for something the CA cannot sign.
    #[error("invalid issuance request: {0}")]
    InvalidRequest(String),
    /// Key generation or signing failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

impl LocalCa {
    /// Loads `<dir>/root.pem`, `root.key`, `intermediate.pem` and
    /// `intermediate.key`, creating what is absent: a fresh directory gets a
    /// new root and intermediate; a root without an intermediate gets a new
    /// intermediate. A root certificate without its key (or the reverse) is
    /// an error, never silently replaced: clients may already trust it.
    pub fn load_or_create(dir: &Path) -> Result<LocalCa, CaError> {
        // 0700: the directory holds private keys.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| io_error(dir, source))?;
        let path = |name: &str| dir.join(name);

        let (root_der, root_key, root_created) =
            match (path(ROOT_CERT).exists(), path(ROOT_KEY).exists()) {
                (true, true) => {
                    let der = read_cert(&path(ROOT_CERT))?;
                    let key = read_key(&path(ROOT_KEY))?;
                    check_ca_pair(&path(ROOT_CERT), &der, &key, None)?;
                    (der, key, false)
                }
                (false, false) => {
                    let (der, key) = create_root()?;
                    // Key first: a crash in between leaves a key without a
                    // certificate, which the next start reports instead of
                    // serving a root nobody can use.
                    write_file(&path(ROOT_KEY), key.serialize_pem().as_bytes(), 0o600)?;
                    write_file(&path(ROOT_CERT), pem_encode(&der).as_bytes(), 0o644)?;
                    tracing::info!(path = %path(ROOT_CERT).display(), "created local root CA");
                    (der, key, true)
                }
                (true, false) => {
                    return Err(CaError::Inconsistent {
                        path: path(ROOT_KEY),
                        detail: format!(
                            "missing while {ROOT_CERT} exists; restore the key, or remove \
                             {ROOT_CERT} to create a new root CA"
                        ),
                    });
                }
                (false, true) => {
                    return Err(CaError::Inconsistent {
                        path: path(ROOT_CERT),
                        detail: format!(
                            "missing while {ROOT_KEY} exists; restore the certificate, or \
                             remove {ROOT_KEY} to create a new root CA"
                        ),
                    });
                }
            };
        let root_not_after = not_after_of(&path(ROOT_CERT), &root_der)?;
        let root = Issuer::from_ca_cert_der(&root_der, root_key).map_err(|e| CaError::Parse {
            path: path(ROOT_CERT),
            detail: format!("not usable as an issuer: {e}"),
        })?;

        let have_intermediate = path(INTERMEDIATE_CERT).exists() && path(INTERMEDIATE_KEY).exists();
        let (intermediate_der, intermediate_key) = if have_intermediate && !root_created {
            let der = read_cert(&path(INTERMEDIATE_CERT))?;
            let key = read_key(&path(INTERMEDIATE_KEY))?;
            check_ca_pair(&path(INTERMEDIATE_CERT), &der, &key, Some(&root_der))?;
            (der, key)
        } else {
            // A new root, or an intermediate half missing: the root signs a
            // new one. Certificates from an older intermediate stay valid.
            if !root_created {
                tracing::warn!(dir = %dir.display(), "intermediate CA missing; creating a new one");
            }
            let (der, key) = create_intermediate(&root, root_not_after)?;
            write_file(
                &path(INTERMEDIATE_KEY),
                key.serialize_pem().as_bytes(),
                0o600,
            )?;
            write_file(&path(INTERMEDIATE_CERT), pem_encode(&der).as_bytes(), 0o644)?;
            (der, key)
        };
        // The root key leaves memory here: only the intermediate signs.
        drop(root);

        let intermediate_not_after = not_after_of(&path(INTERMEDIATE_CERT), &intermediate_der)?;
        let intermediate_key_id =
            subject_key_id(&intermediate_der).ok_or_else(|| CaError::Parse {
                path: path(INTERMEDIATE_CERT),
                detail: "the intermediate has no subjectKeyIdentifier".to_string(),
            })?;
        let intermediate =
            Issuer::from_ca_cert_der(&intermediate_der, intermediate_key).map_err(|e| {
                CaError::Parse {
                    path: path(INTERMEDIATE_CERT),
                    detail: format!("not usable as an issuer: {e}"),
                }
            })?;
        Ok(LocalCa {
            root_pem: pem_encode(&root_der),
            intermediate_pem: pem_encode(&intermediate_der),
            intermediate_der,
            intermediate_not_after,
            intermediate_key_id,
            intermediate,
        })
    }

    /// The root certificate, PEM: what operators distribute to trust stores.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The intermediate certificate, PEM.
    pub fn intermediate_pem(&self) -> &str {
        &self.intermediate_pem
    }

    /// The intermediate certificate, DER.
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }

    /// When the intermediate expires; leaves are clamped to it.
    pub fn intermediate_not_after(&self) -> OffsetDateTime {
        self.intermediate_not_after
    }

    /// A TLS server certificate for the hub's own listener, valid one year,
    /// for `names` (DNS names or IP literals) with a fresh P-256 key.
    /// Returns the chain (leaf, intermediate) and the PKCS#8 private key.
    pub fn listener_certificate(
        &self,
        names: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CaError> {
        let mut subject_alt_names = Vec::with_capacity(names.len());
        for name in names {
            let san = match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.as_str().try_into().map_err(|_| {
                    CaError::InvalidRequest(format!("{name:?} is not a valid DNS name"))
                })?),
            };
            if !subject_alt_names.contains(&san) {
                subject_alt_names.push(san);
            }
        }
        if subject_alt_names.is_empty() {
            return Err(CaError::InvalidRequest(
                "a listener certificate needs at least one name".to_string(),
            ));
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CaError::Signing(format!("generating the listener key: {e}")))?;
        let now = now_utc_seconds()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        if let Some(first) = names.first().filter(|n| n.len() <= MAX_COMMON_NAME_LEN) {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.subject_alt_names = subject_alt_names;
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        params.not_before = now - BACKDATE;
        params.not_after = (now + LISTENER_VALIDITY).min(self.intermediate_not_after);
        end_entity(
            &mut params,
            &rcgen::PublicKeyData::subject_public_key_info(&key),
        );
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params
            .signed_by(&key, &self.intermediate)
            .map_err(|e| CaError::Signing(format!("signing the listener certificate: {e}")))?;
        let chain = vec![cert.der().clone(), self.intermediate_der.clone()];
        let private_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((chain, private_key))
    }

    /// Signs a leaf for the CSR key in `req`: subject CN = the first DNS
    /// identifier when it fits (RFC 5280 ub-common-name 64), else an empty
    /// subject with a critical SAN (RFC 5280 §4.2.1.6); SANs = the
    /// identifiers; KU digitalSignature (+ keyEncipherment for RSA); EKU
    /// serverAuth + clientAuth; CA:false; AKI + SKI; the CRL distribution
    /// point. No OCSP (the CA/B Forum made it optional in 2023).
    pub fn sign(&self, req: &LeafRequest<'_>) -> Result<IssuedCertificate, CaError> {
        let public_key =
            CertifiedPublicKey::from_spki_der(req.spki_der).map_err(CaError::InvalidRequest)?;
        check_serial(req.serial)?;
        if req.identifiers.is_empty() {
            return Err(CaError::InvalidRequest(
                "no identifiers to certify".to_string(),
            ));
        }
        let not_before = utc_seconds(req.not_before)?;
        let not_after = utc_seconds(req.not_after)?.min(self.intermediate_not_after);
        if not_after <= not_before {
            return Err(CaError::InvalidRequest(format!(
                "notAfter {not_after} is not after notBefore {not_before} (the intermediate \
                 expires {})",
                self.intermediate_not_after
            )));
        }

        let mut params = CertificateParams::default();
        // The default carries an rcgen CN; an empty DN is what we mean when no
        // name fits.
        params.distinguished_name = DistinguishedName::new();
        let common_name = req
            .identifiers
            .iter()
            .find(|id| id.kind == IdentifierKind::Dns)
            .filter(|id| id.value.len() <= MAX_COMMON_NAME_LEN);
        if let Some(cn) = common_name {
            params
                .distinguished_name
                .push(DnType::CommonName, cn.value.as_str());
        }
        params.subject_alt_names = req
            .identifiers
            .iter()
            .map(san_for)
            .collect::<Result<Vec<_>, _>>()?;
        params.serial_number = Some(SerialNumber::from_slice(req.serial));
        params.not_before = not_before;
        params.not_after = not_after;
        end_entity(&mut params, req.spki_der);
        params.key_usages = match public_key.summary.kind {
            KeyKind::Rsa { .. } => {
                vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ]
            }
            KeyKind::EcP256 | KeyKind::EcP384 => vec![KeyUsagePurpose::DigitalSignature],
        };
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        if !req.crl_url.is_empty() {
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![req.crl_url.to_string()],
            }];
        }

        let cert = params
            .signed_by(&public_key, &self.intermediate)
            .map_err(|e| CaError::Signing(e.to_string()))?;
        let der = cert.der().to_vec();
        let chain_pem = format!("{}{}", pem_encode(&der), self.intermediate_pem);
        Ok(IssuedCertificate {
            der,
            chain_pem,
            not_before,
            not_after,
        })
    }

    /// The CRL (RFC 5280 §5), signed by the intermediate, DER. Reason code 0
    /// (unspecified) is left out, as RFC 5280 §5.3.1 asks.
    pub fn crl(
        &self,
        revoked: &[RevokedEntry],
        crl_number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>, CaError> {
        let this_update = utc_seconds(this_update)?;
        let next_update = utc_seconds(next_update)?;
        if next_update <= this_update {
            return Err(CaError::InvalidRequest(
                "the CRL's nextUpdate must be after thisUpdate".to_string(),
            ));
        }
        let revoked_certs = revoked
            .iter()
            .map(|entry| {
                check_serial(&entry.serial)?;
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&entry.serial),
                    revocation_time: utc_seconds(entry.revoked_at)?,
                    reason_code: revocation_reason(entry.reason)?,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, CaError>>()?;
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            // RFC 5280 §5.2.1: the AKI must match the intermediate's SKI.
            key_identifier_method: KeyIdMethod::PreSpecified(self.intermediate_key_id.clone()),
        };
        let crl = params
            .signed_by(&self.intermediate)
            .map_err(|e| CaError::Signing(format!("signing the CRL: {e}")))?;
        Ok(crl.der().to_vec())
    }
}

impl fmt::Debug for LocalCa {
    /// Names the CA, never its key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCa")
            .field("intermediate_not_after", &self.intermediate_not_after)
            .field(
                "intermediate_key_id",
                &super::serial_hex(&self.intermediate_key_id),
            )
            .finish_non_exhaustive()
    }
}

impl From<CaError> for Error {
    /// The cause is logged; ACME clients see a generic internal error.
    fn from(e: CaError) -> Self {
        Error::internal("issuing from the local CA", e)
    }
}

fn io_error(path: &Path, source: io::Error) -> CaError {
    CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn create_root() -> Result<(CertificateDer<'static>, KeyPair), CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CaError::Signing(format!("generating the root key: {e}")))?;
    let now = now_utc_seconds()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "acmehub");
    // A random suffix so that two hubs' roots are told apart in trust stores.
    params.distinguished_name.push(
        DnType::CommonName,
        format!("acmehub root CA {}", random_suffix()?),
    );
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    params.not_before = now - BACKDATE;
    params.not_after = now + ROOT_VALIDITY;
    // pathlen 1: the root signs intermediates, which sign only leaves.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.key_identifier_method = KeyIdMethod::Sha256;
    let cert = params
        .self_signed(&key)
        .map_err(|e| CaError::Signing(format!("self-signing the root: {e}")))?;
    Ok((cert.der().clone(), key))
}

fn create_intermediate(
    root: &Issuer<'_, KeyPair>,
    root_not_after: OffsetDateTime,
) -> Result<(CertificateDer<'static>, KeyPair), CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CaError::Signing(format!("generating the intermediate key: {e}")))?;
    let now = now_utc_seconds()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "acmehub");
    params.distinguished_name.push(
        DnType::CommonName,
        format!("acmehub intermediate CA {}", random_suffix()?),
    );
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    params.not_before = now - BACKDATE;
    params.not_after = (now + INTERMEDIATE_VALIDITY).min(root_not_after);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    let cert = params
        .signed_by(&key, root)
        .map_err(|e| CaError::Signing(format!("signing the intermediate: {e}")))?;
    Ok((cert.der().clone(), key))
}

/// Checks that a loaded CA certificate is a CA, matches its key, and (for the
/// intermediate) was signed by the root: catches swapped or stale files.
fn check_ca_pair(
    path: &Path,
    der: &[u8],
    key: &KeyPair,
    signer_der: Option<&[u8]>,
) -> Result<(), CaError> {
    let inconsistent = |detail: &str| CaError::Inconsistent {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    };
    let cert = parse_cert(path, der)?;
    if !cert.is_ca() {
        return Err(inconsistent("the certificate is not a CA certificate"));
    }
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(inconsistent(
            "the certificate does not match its private key file",
        ));
    }
    let signer = match signer_der {
        Some(root_der) => Some(
            x509_parser::parse_x509_certificate(root_der)
                .map_err(|_| inconsistent("the root certificate cannot be parsed"))?
                .1,
        ),
        None => None,
    };
    // `None` verifies with the certificate's own key (self-signed root).
    cert.verify_signature(signer.as_ref().map(|root| root.public_key()))
        .map_err(|_| {
            inconsistent(match signer_der {
                Some(_) => "the certificate was not signed by the root in this directory",
                None => "the root certificate's self-signature does not verify",
            })
        })
}

fn parse_cert<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>, CaError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(CaError::Parse {
            path: path.to_path_buf(),
            detail: "not a valid X.509 certificate".to_string(),
        }),
    }
}

fn not_after_of(path: &Path, der: &[u8]) -> Result<OffsetDateTime, CaError> {
    Ok(parse_cert(path, der)?.validity().not_after.to_datetime())
}

fn subject_key_id(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

fn read_cert(path: &Path) -> Result<CertificateDer<'static>, CaError> {
    let bytes = fs::read(path).map_err(|source| io_error(path, source))?;
    let parse_error = |detail: &str| CaError::Parse {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    };
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(&bytes).map_err(|_| parse_error("not a PEM file"))?;
    if pem.label != "CERTIFICATE" {
        return Err(parse_error("the PEM block is not a CERTIFICATE"));
    }
    parse_cert(path, &pem.contents)?;
    Ok(CertificateDer::from(pem.contents))
}

fn read_key(path: &Path) -> Result<KeyPair, CaError> {
    let text = fs::read_to_string(path).map_err(|source| io_error(path, source))?;
    // The error from the key parser is dropped on purpose: it is about the
    // contents of a secret file.
    KeyPair::from_pem(&text).map_err(|_| CaError::Parse {
        path: path.to_path_buf(),
        detail: "not a PKCS#8 PEM private key (P-256)".to_string(),
    })
}

/// The CA's four files, as kept (sealed) in the database so that every
/// replica on one database signs with the same CA.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CaFiles {
    pub root_cert: String,
    pub root_key: String,
    pub intermediate_cert: String,
    pub intermediate_key: String,
}

impl CaFiles {
    /// Whether `dir` has a root certificate (the other files may be missing:
    /// [`LocalCa::load_or_create`] says what to do then).
    pub fn present(dir: &Path) -> bool {
        dir.join(ROOT_CERT).exists()
    }

    /// The files in `dir`, or `None` when it has no root certificate yet.
    /// Call after [`LocalCa::load_or_create`], which checks they belong
    /// together.
    pub fn read(dir: &Path) -> Result<Option<CaFiles>, CaError> {
        if !dir.join(ROOT_CERT).exists() {
            return Ok(None);
        }
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path).map_err(|source| io_error(&path, source))
        };
        Ok(Some(CaFiles {
            root_cert: read(ROOT_CERT)?,
            root_key: read(ROOT_KEY)?,
            intermediate_cert: read(INTERMEDIATE_CERT)?,
            intermediate_key: read(INTERMEDIATE_KEY)?,
        }))
    }

    /// Writes the four files into `dir` (created 0700), keys first and 0600.
    pub fn write(&self, dir: &Path) -> Result<(), CaError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| io_error(dir, source))?;
        write_file(&dir.join(ROOT_KEY), self.root_key.as_bytes(), 0o600)?;
        write_file(&dir.join(ROOT_CERT), self.root_cert.as_bytes(), 0o644)?;
        write_file(
            &dir.join(INTERMEDIATE_KEY),
            self.intermediate_key.as_bytes(),
            0o600,
        )?;
        write_file(
            &dir.join(INTERMEDIATE_CERT),
            self.intermediate_cert.as_bytes(),
            0o644,
        )
    }
}

/// Writes through a temporary file and a rename, so a crash never leaves a
/// half-written key or certificate behind; the mode is set at creation, so a
/// key is never readable by others even for a moment.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(io_error(&tmp, source)),
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|source| io_error(&tmp, source))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| io_error(&tmp, source))?;
    fs::rename(&tmp, path).map_err(|source| io_error(path, source))
}

fn pem_encode(der: &[u8]) -> String {
    crate::util::pem("CERTIFICATE", der)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], CaError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CaError::Signing("the system random generator failed".to_string()))?;
    Ok(bytes)
}

/// A serial for the CA's own certificates: 16 random bytes with the top bits
/// fixed to 01, so the INTEGER is positive and exactly 16 octets long, with
/// 126 random bits (CA/B BR §7.1 asks for 64+).
fn random_serial() -> Result<[u8; 16], CaError> {
    let mut serial = random_bytes::<16>()?;
    serial[0] = (serial[0] & 0x3f) | 0x40;
    Ok(serial)
}

fn random_suffix() -> Result<String, CaError> {
    Ok(super::serial_hex(&random_bytes::<4>()?))
}

fn check_serial(serial: &[u8]) -> Result<(), CaError> {
    let significant = serial.iter().skip_while(|b| **b == 0).count();
    if significant == 0 {
        return Err(CaError::InvalidRequest(
            "the serial must not be zero".to_string(),
        ));
    }
    // A 20-byte value with its high bit set needs a 21st (0x00) octet.
    if super::serial_der_content(serial).len() > MAX_SERIAL_LEN + 1 || significant > MAX_SERIAL_LEN
    {
        return Err(CaError::InvalidRequest(
            "the serial is longer than 20 octets (RFC 5280 §4.1.2.2)".to_string(),
        ));
    }
    Ok(())
}

fn san_for(id: &Identifier) -> Result<SanType, CaError> {
    match id.kind {
        IdentifierKind::Dns => id
            .value
            .as_str()
            .try_into()
            .map(SanType::DnsName)
            .map_err(|_| CaError::InvalidRequest(format!("{id} is not an IA5 DNS name"))),
        IdentifierKind::Ip => id
            .ip_addr()
            .map(SanType::IpAddress)
            .ok_or_else(|| CaError::InvalidRequest(format!("{id} is not an IP address"))),
    }
}

/// RFC 5280 §5.3.1: "The reason code CRL entry extension SHOULD be absent
/// instead of using the unspecified (0) reasonCode value."
fn revocation_reason(code: u8) -> Result<Option<RevocationReason>, CaError> {
    Ok(Some(match code {
        0 => return Ok(None),
        1 => RevocationReason::KeyCompromise,
        2 => RevocationReason::CaCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        6 => RevocationReason::CertificateHold,
        8 => RevocationReason::RemoveFromCrl,
        9 => RevocationReason::PrivilegeWithdrawn,
        10 => RevocationReason::AaCompromise,
        other => {
            return Err(CaError::InvalidRequest(format!(
                "{other} is not an RFC 5280 §5.3.1 CRLReason code"
            )));
        }
    }))
}

/// Certificates carry whole seconds in UTC (RFC 5280 §4.1.2.5), in years
/// that UTCTime or GeneralizedTime can express (the encoder panics otherwise).
fn utc_seconds(t: OffsetDateTime) -> Result<OffsetDateTime, CaError> {
    let invalid = || CaError::InvalidRequest(format!("time {t} cannot appear in a certificate"));
    let utc = t.checked_to_offset(UtcOffset::UTC).ok_or_else(invalid)?;
    if !(1950..=9999).contains(&utc.year()) {
        return Err(invalid());
    }
    utc.replace_nanosecond(0).map_err(|_| invalid())
}

fn now_utc_seconds() -> Result<OffsetDateTime, CaError> {
    utc_seconds(OffsetDateTime::now_utc())
}

/// Marks a certificate as an end entity: basicConstraints, critical, with
/// `cA` left at its default. rcgen's `IsCa::ExplicitNoCa` encodes `cA FALSE`
/// explicitly, which DER forbids (X.690 §11.5) and strict parsers such as
/// Python's cryptography (certbot) reject; the empty SEQUENCE is the DER form.
/// With `NoCa` rcgen writes no subject key identifier either, so it is added
/// here: the first 20 bytes of SHA-256 over the SPKI (RFC 7093 §2).
fn end_entity(params: &mut CertificateParams, spki_der: &[u8]) {
    params.is_ca = IsCa::NoCa;
    let mut basic_constraints =
        rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x00]);
    basic_constraints.set_criticality(true);
    let digest = ring::digest::digest(&ring::digest::SHA256, spki_der);
    let mut key_id = vec![0x04, 20];
    key_id.extend_from_slice(&digest.as_ref()[..20]);
    params.custom_extensions.push(basic_constraints);
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &[2, 5, 29, 14],
            key_id,
        ));
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::Arc;

    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::extensions::{DistributionPointName, GeneralName};
    use x509_parser::prelude::FromDer;

    use super::*;
    use crate::ca::{ari_cert_id, certificate_serial, parse_csr, serial_der_content};

    const CRL_URL: &str = "https://hub.example/acme/default/crl";

    fn der_from_pem(pem: &str) -> Vec<u8> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        pem.contents
    }

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        assert!(rest.is_empty());
        cert
    }

    fn ids(values: &[&str]) -> Vec<Identifier> {
        values
            .iter()
            .map(|v| match v.parse::<IpAddr>() {
                Ok(ip) => Identifier::from_ip(ip),
                Err(_) => Identifier::dns(v).unwrap(),
            })
            .collect()
    }

    fn request<'a>(
        serial: &'a [u8],
        spki_der: &'a [u8],
        identifiers: &'a [Identifier],
    ) -> LeafRequest<'a> {
        let now = OffsetDateTime::now_utc();
        LeafRequest {
            serial,
            spki_der,
            identifiers,
            not_before: now - Duration::minutes(5),
            not_after: now + Duration::days(90),
            crl_url: CRL_URL,
        }
    }

    /// CSR parameters as ACME clients use them (instant-acme clears rcgen's default CN).
    fn csr_params(names: &[&str]) -> CertificateParams {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
    }

    fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
        let san = cert.subject_alternative_name().unwrap().unwrap();
        san.value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(o) => format!("ip:{o:?}"),
                other => panic!("unexpected SAN {other:?}"),
            })
            .collect()
    }

    /// Does the leaf verify with the intermediate, and the intermediate with the root?
    fn assert_chain_verifies(ca: &LocalCa, leaf_der: &[u8]) {
        let root_der = der_from_pem(ca.root_pem());
        let intermediate_der = der_from_pem(ca.intermediate_pem());
        let (root, intermediate) = (parse(&root_der), parse(&intermediate_der));
        let leaf = parse(leaf_der);
        leaf.verify_signature(Some(intermediate.public_key()))
            .unwrap();
        intermediate
            .verify_signature(Some(root.public_key()))
            .unwrap();
        root.verify_signature(None).unwrap();
        assert!(leaf.verify_signature(Some(root.public_key())).is_err());
        assert_eq!(leaf.issuer(), intermediate.subject());
        assert_eq!(intermediate.issuer(), root.subject());
    }

    /// A full TLS handshake in memory, the client trusting only the root: what
    /// a browser or curl pointed at the CA's root would decide (webpki checks
    /// the profile: EKU, basic constraints, names, validity).
    fn tls_handshake(
        root_pem: &str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        server_name: &str,
    ) -> Result<(), rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(der_from_pem(root_pem)))
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from(server_name.to_string()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client), name)?;
        let mut server = rustls::ServerConnection::new(Arc::new(server))?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets()?;
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn load_or_create_is_stable_and_keys_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let first = LocalCa::load_or_create(&dir).unwrap();
        let second = LocalCa::load_or_create(&dir).unwrap();
        assert_eq!(first.root_pem(), second.root_pem());
        assert_eq!(first.intermediate_pem(), second.intermediate_pem());
        assert_eq!(
            fs::read_to_string(dir.join(ROOT_CERT)).unwrap(),
            first.root_pem()
        );

        let mode = |name: &str| fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(ROOT_KEY), 0o600);
        assert_eq!(mode(INTERMEDIATE_KEY), 0o600);
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );

        // The root as specified: CA, pathlen 1, a name that differs per hub.
        let root_der = der_from_pem(first.root_pem());
        let root = parse(&root_der);
        let bc = root.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(1));
        let cn = root
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert!(cn.starts_with("acmehub root CA "), "{cn}");
        let other = LocalCa::load_or_create(&tmp.path().join("other")).unwrap();
        assert_ne!(other.root_pem(), first.root_pem());

        let intermediate_der = der_from_pem(first.intermediate_pem());
        let intermediate = parse(&intermediate_der);
        let bc = intermediate.basic_constraints().unwrap().unwrap().value;
        assert_eq!((bc.ca, bc.path_len_constraint), (true, Some(0)));
        let ku = intermediate.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        // Roughly 10 and 5 years.
        let years = |c: &X509Certificate<'_>| {
            (c.validity().not_after.to_datetime() - c.validity().not_before.to_datetime())
                .whole_days()
                / 365
        };
        assert_eq!(years(&root), 10);
        assert_eq!(years(&intermediate), 5);

        // No key material in Debug output.
        let debug = format!("{first:?}");
        assert!(!debug.contains("PRIVATE"), "{debug}");
    }

    #[test]
    fn missing_intermediate_is_recreated_under_the_same_root() {
        let tmp = tempfile::tempdir().unwrap();
        let first = LocalCa::load_or_create(tmp.path()).unwrap();
        fs::remove_file(tmp.path().join(INTERMEDIATE_KEY)).unwrap();
        let second = LocalCa::load_or_create(tmp.path()).unwrap();
        assert_eq!(first.root_pem(), second.root_pem());
        assert_ne!(first.intermediate_pem(), second.intermediate_pem());
        let der = der_from_pem(second.intermediate_pem());
        parse(&der)
            .verify_signature(Some(parse(&der_from_pem(first.root_pem())).public_key()))
            .unwrap();
        assert!(tmp.path().join(INTERMEDIATE_KEY).exists());
    }

    #[test]
    fn broken_ca_files_are_named_in_the_error() {
        let tmp = tempfile::tempdir().unwrap();
        LocalCa::load_or_create(tmp.path()).unwrap();

        fs::write(tmp.path().join(INTERMEDIATE_CERT), "not a certificate").unwrap();
        let err = LocalCa::load_or_create(tmp.path()).unwrap_err();
        assert!(matches!(err, CaError::Parse { .. }), "{err}");
        assert!(err.to_string().contains(INTERMEDIATE_CERT), "{err}");

        // An intermediate signed by another hub's root is refused.
        let other = tempfile::tempdir().unwrap();
        LocalCa::load_or_create(other.path()).unwrap();
        for name in [INTERMEDIATE_CERT, INTERMEDIATE_KEY] {
            fs::copy(other.path().join(name), tmp.path().join(name)).unwrap();
        }
        let err = LocalCa::load_or_create(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("not signed by the root"), "{err}");

        // A key that is not the certificate's.
        fs::copy(other.path().join(ROOT_KEY), tmp.path().join(ROOT_KEY)).unwrap();
        let err = LocalCa::load_or_create(tmp.path()).unwrap_err();
        assert!(
            err.to_string().contains("does not match its private key"),
            "{err}"
        );

        fs::write(tmp.path().join(ROOT_KEY), "garbage").unwrap();
        let err = LocalCa::load_or_create(tmp.path()).unwrap_err();
        assert!(err.to_string().contains(ROOT_KEY), "{err}");

        // A root certificate without its key is never replaced silently.
        fs::remove_file(tmp.path().join(ROOT_KEY)).unwrap();
        let root_before = fs::read(tmp.path().join(ROOT_CERT)).unwrap();
        let err = LocalCa::load_or_create(tmp.path()).unwrap_err();
        assert!(matches!(err, CaError::Inconsistent { .. }));
        assert!(err.to_string().contains(ROOT_KEY), "{err}");
        assert_eq!(fs::read(tmp.path().join(ROOT_CERT)).unwrap(), root_before);
    }

    #[test]
    fn leaf_from_a_real_csr_has_the_profile_and_chains_to_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(tmp.path()).unwrap();
        let key = KeyPair::generate().unwrap();
        let csr_der = csr_params(&["www.example.com", "*.example.com", "192.0.2.10"])
            .serialize_request(&key)
            .unwrap();
        let csr = parse_csr(csr_der.der()).unwrap();

        // High bit set: must still be a positive serial, equal to what was asked.
        let serial = [
            0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        let issued = ca
            .sign(&request(&serial, &csr.spki_der, &csr.identifiers))
            .unwrap();
        let leaf = parse(&issued.der);

        let mut expected_serial = vec![0];
        expected_serial.extend_from_slice(&serial);
        assert_eq!(leaf.raw_serial(), expected_serial.as_slice());
        assert_eq!(
            certificate_serial(&issued.der).unwrap(),
            serial_der_content(&serial)
        );
        assert!(
            ari_cert_id(&issued.der)
                .unwrap()
                .ends_with(".AN6tvu8BAgMEBQYHCAkKCww")
        );

        assert_eq!(
            sans(&leaf),
            ["*.example.com", "www.example.com", "ip:[192, 0, 2, 10]"]
        );
        let cn = leaf
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(cn, "*.example.com");
        assert!(!leaf.is_ca());
        assert!(!leaf.basic_constraints().unwrap().unwrap().value.ca);
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let ku = leaf.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_encipherment() && !ku.key_cert_sign());
        assert_eq!(leaf.public_key().raw, csr.spki_der.as_slice());

        let crl_urls: Vec<String> = leaf
            .iter_extensions()
            .filter_map(|ext| match ext.parsed_extension() {
                ParsedExtension::CRLDistributionPoints(points) => Some(points.points.clone()),
                _ => None,
            })
            .flatten()
            .filter_map(|point| match point.distribution_point {
                Some(DistributionPointName::FullName(names)) => Some(names),
                _ => None,
            })
            .flatten()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => Some(uri.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(crl_urls, [CRL_URL]);
        assert!(subject_key_id(&issued.der).is_some());
        // basicConstraints is critical and DER-encoded with cA at its default
        // (an empty SEQUENCE): certbot's parser refuses an explicit cA FALSE.
        let basic_constraints = leaf
            .iter_extensions()
            .find(|ext| ext.oid.to_id_string() == "2.5.29.19")
            .expect("basicConstraints present");
        assert!(basic_constraints.critical);
        assert_eq!(basic_constraints.value, [0x30, 0x00]);
        let aki = leaf
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.clone(),
                _ => None,
            })
            .unwrap();
        assert_eq!(aki.0, ca.intermediate_key_id.as_slice());
        // No OCSP: no authorityInfoAccess.
        assert!(leaf.iter_extensions().all(|ext| !matches!(
            ext.parsed_extension(),
            ParsedExtension::AuthorityInfoAccess(_)
        )));

        assert_chain_verifies(&ca, &issued.der);
        assert_eq!(issued.chain_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(issued.chain_pem.ends_with(ca.intermediate_pem()));
        assert_eq!(issued.not_before, leaf.validity().not_before.to_datetime());
        assert_eq!(issued.not_after, leaf.validity().not_after.to_datetime());

        // A TLS client trusting the root accepts it, by any of its names.
        let chain = vec![
            CertificateDer::from(issued.der.clone()),
            CertificateDer::from(der_from_pem(ca.intermediate_pem())),
        ];
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        tls_handshake(
            ca.root_pem(),
            chain.clone(),
            private.clone_key(),
            "api.example.com",
        )
        .unwrap();
        tls_handshake(
            ca.root_pem(),
            chain.clone(),
            private.clone_key(),
            "192.0.2.10",
        )
        .unwrap();
        assert!(tls_handshake(ca.root_pem(), chain, private, "other.example.net").is_err());
    }

    #[test]
    fn csr_asking_for_a_ca_still_gets_a_plain_leaf() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(tmp.path()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = csr_params(&["sneaky.example.com"]);
        // basicConstraints (2.5.29.19) critical, SEQUENCE { cA TRUE }: rcgen
        // refuses to put is_ca in a CSR, so the extension is written by hand.
        let mut ca_true =
            rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 3, 1, 1, 0xff]);
        ca_true.set_criticality(true);
        params.custom_extensions = vec![ca_true];
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        let csr_der = params.serialize_request(&key).unwrap();
        let (_, raw) = X509CertificationRequest::from_der(csr_der.der()).unwrap();
        let asked_for_ca = raw
            .requested_extensions()
            .unwrap()
            .any(|ext| matches!(ext, ParsedExtension::BasicConstraints(bc) if bc.ca));
        assert!(asked_for_ca, "the test CSR must really ask for CA:true");
        let csr = parse_csr(csr_der.der()).unwrap();
        let issued = ca
            .sign(&request(&[0x42; 16], &csr.spki_der, &csr.identifiers))
            .unwrap();
        let leaf = parse(&issued.der);
        assert!(!leaf.is_ca());
        let ku = leaf.key_usage().unwrap().unwrap().value;
        assert!(!ku.key_cert_sign() && !ku.crl_sign());
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.code_signing);
    }

    #[test]
    fn rsa_leaf_gets_key_encipherment_and_long_names_no_cn() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(tmp.path()).unwrap();
        let csr = parse_csr(include_bytes!("testdata/rsa2048.der")).unwrap();
        let issued = ca
            .sign(&request(&[7; 16], &csr.spki_der, &csr.identifiers))
            .unwrap();
        let leaf = parse(&issued.der);
        let ku = leaf.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment());
        assert_chain_verifies(&ca, &issued.der);

        // A first name over 64 characters cannot be the CN: empty subject,
        // critical SAN (RFC 5280 §4.2.1.6).
        let long = format!("{}.example.com", "a".repeat(60));
        let identifiers = ids(&[&long]);
        let issued = ca
            .sign(&request(&[8; 16], &csr.spki_der, &identifiers))
            .unwrap();
        let leaf = parse(&issued.der);
        assert_eq!(leaf.subject().iter().count(), 0);
        assert!(leaf.subject_alternative_name().unwrap().unwrap().critical);

        // IP-only: no CN either.
        let identifiers = ids(&["2001:db8::7"]);
        let issued = ca
            .sign(&request(&[9; 16], &csr.spki_der, &identifiers))
            .unwrap();
        assert_eq!(parse(&issued.der).subject().iter().count(), 0);
    }

    #[test]
    fn bad_sign_requests_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(tmp.path()).unwrap();
        let key = KeyPair::generate().unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let identifiers = ids(&["a.example.com"]);
        for serial in [&[][..], &[0, 0][..], &[1; 21][..]] {
            let err = ca.sign(&request(serial, &spki, &identifiers)).unwrap_err();
            assert!(
                matches!(err, CaError::InvalidRequest(_)),
                "{serial:?}: {err}"
            );
        }
        assert!(ca.sign(&request(&[1; 16], b"junk", &identifiers)).is_err());
        assert!(ca.sign(&request(&[1; 16], &spki, &[])).is_err());
        let mut backwards = request(&[1; 16], &spki, &identifiers);
        backwards.not_after = backwards.not_before - Duration::days(1);
        assert!(ca.sign(&backwards).is_err());

        // A leaf never outlives the intermediate.
        let mut long = request(&[1; 16], &spki, &identifiers);
        long.not_after = long.not_before + Duration::days(365 * 20);
        let issued = ca.sign(&long).unwrap();
        assert_eq!(issued.not_after, ca.intermediate_not_after());
    }

    #[test]
    fn crl_lists_revoked_serials_and_verifies_with_the_intermediate() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(tmp.path()).unwrap();
        let now = OffsetDateTime::now_utc();
        let revoked = vec![
            RevokedEntry {
                serial: vec![0xde, 0xad, 0xbe, 0xef],
                revoked_at: now,
                reason: 1,
            },
            RevokedEntry {
                serial: vec![0x00, 0x12, 0x34],
                revoked_at: now,
                reason: 0,
            },
        ];
        let der = ca.crl(&revoked, 42, now, now + Duration::days(1)).unwrap();
        let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
        let intermediate_der = der_from_pem(ca.intermediate_pem());
        let intermediate = parse(&intermediate_der);
        crl.verify_signature(intermediate.public_key()).unwrap();
        assert_eq!(crl.issuer(), intermediate.subject());
        assert_eq!(crl.crl_number().unwrap().to_bytes_be(), vec![42]);
        let entries: Vec<(Vec<u8>, Option<u8>)> = crl
            .iter_revoked_certificates()
            .map(|r| {
                (
                    r.raw_serial().to_vec(),
                    r.reason_code().map(|(_, code)| code.0),
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                (vec![0x00, 0xde, 0xad, 0xbe, 0xef], Some(1)),
                (vec![0x12, 0x34], None)
            ]
        );

        let err = ca
            .crl(
                &[RevokedEntry {
                    serial: vec![1],
                    revoked_at: now,
                    reason: 7,
                }],
                43,
                now,
                now + Duration::days(1),
            )
            .unwrap_err();
        assert!(err.to_string().contains("CRLReason"), "{err}");
        assert!(ca.crl(&[], 44, now, now).is_err());
        let empty = ca.crl(&[], 45, now, now + Duration::hours(1)).unwrap();
        let (_, crl) = x509_parser::parse_x509_crl(&empty).unwrap();
        assert_eq!(crl.iter_revoked_certificates().count(), 0);
    }

    #[test]
    fn listener_certificate_serves_tls_for_its_names() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(tmp.path()).unwrap();
        let names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "hub.example.com".to_string(),
        ];
        let (chain, key) = ca.listener_certificate(&names).unwrap();
        assert_eq!(chain.len(), 2);
        let leaf = parse(&chain[0]);
        assert_eq!(
            sans(&leaf),
            ["localhost", "ip:[127, 0, 0, 1]", "hub.example.com"]
        );
        let days =
            (leaf.validity().not_after.to_datetime() - OffsetDateTime::now_utc()).whole_days();
        assert!((364..=365).contains(&days), "{days}");
        assert_chain_verifies(&ca, &chain[0]);
        for name in ["localhost", "127.0.0.1", "hub.example.com"] {
            tls_handshake(ca.root_pem(), chain.clone(), key.clone_key(), name).unwrap();
        }
        assert!(ca.listener_certificate(&[]).is_err());
        assert!(
            ca.listener_certificate(&["bad name é".to_string()])
                .is_err()
        );
    }

    /// OpenSSL as an independent judge of the chain; skipped without openssl.
    #[test]
    fn openssl_verifies_the_chain() {
        if std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_err()
        {
            eprintln!("openssl not found on PATH: skipping openssl_verifies_the_chain");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(&tmp.path().join("ca")).unwrap();
        let key = KeyPair::generate().unwrap();
        let csr = csr_params(&["openssl.example.com"])
            .serialize_request(&key)
            .unwrap();
        let csr = parse_csr(csr.der()).unwrap();
        let issued = ca
            .sign(&request(&[0x80; 16], &csr.spki_der, &csr.identifiers))
            .unwrap();
        let leaf_path = tmp.path().join("leaf.pem");
        fs::write(&leaf_path, pem_encode(&issued.der)).unwrap();
        let output = std::process::Command::new("openssl")
            .arg("verify")
            .arg("-x509_strict")
            .arg("-purpose")
            .arg("sslserver")
            .arg("-CAfile")
            .arg(tmp.path().join("ca").join(ROOT_CERT))
            .arg("-untrusted")
            .arg(tmp.path().join("ca").join(INTERMEDIATE_CERT))
            .arg(&leaf_path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "openssl verify failed: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("OK"), "{stdout}");
    }
}
