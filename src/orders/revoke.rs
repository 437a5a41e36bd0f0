//! Revocation (RFC 8555 §7.6), the CRL that publishes it, and renewal
//! information (ARI, RFC 9773) for certificates we issued.

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ca::RevokedEntry;
use crate::error::{Error, ErrorKind};
use crate::hub::Hub;
use crate::policy::{ChallengeType, Identifier};
use crate::store::{
    Account, Certificate, CertificateIssuer, CertificateStatus, Instance, StoreError,
};
use crate::util::now;

use super::finalize::unhex;
use super::keys::spki_matches_jwk;
use crate::audit::{self, Actor};
use crate::util::hex;

/// Who asks for a revocation.
pub enum Revoker<'a> {
    /// An account, by its `kid`.
    Account(&'a Account),
    /// Whoever holds the certificate's private key (the JWS carries the key as `jwk`), as JSON text.
    CertificateKey(&'a str),
}

/// RFC 5280 reason codes we accept (CA-only and hold reasons refused).
const ALLOWED_REASONS: [i64; 5] = [0, 1, 3, 4, 5];

/// Finds the certificate of this instance whose DER is `cert_der`.
async fn find_certificate(
    hub: &Hub,
    instance: &Instance,
    cert_der: &[u8],
) -> Result<Certificate, Error> {
    let (_, parsed) = X509Certificate::from_der(cert_der)
        .map_err(|_| Error::malformed("the certificate field does not hold a DER certificate"))?;
    let serial = hex(parsed.raw_serial());
    hub.store
        .certificate_by_serial(&serial)
        .await?
        .filter(|c| c.instance_id == instance.id && c.der.as_deref() == Some(cert_der))
        .ok_or_else(|| Error::not_found("this certificate was not issued by this instance"))
}

/// Revokes a certificate if `by` may: the account that ordered it, an
/// account holding valid authorizations for all its names, or the holder of
/// its key.
pub async fn revoke(
    hub: &Hub,
    instance: &Instance,
    cert_der: &[u8],
    reason: Option<i64>,
    by: Revoker<'_>,
) -> Result<(), Error> {
    let reason = check_reason(reason)?;
    let cert = find_certificate(hub, instance, cert_der).await?;
    let (allowed, actor) = match by {
        Revoker::CertificateKey(jwk) => (spki_matches_jwk(&cert.spki, jwk), Actor::CertificateKey),
        Revoker::Account(account) => (
            account.id == cert.account_id
                || holds_authorizations(hub, account, &cert.identifiers).await?,
            Actor::Account(account.id.clone()),
        ),
    };
    if !allowed {
        return Err(Error::unauthorized(
            "the requester neither ordered this certificate, nor holds its key, nor has valid authorizations for all its identifiers",
        ));
    }
    revoke_certificate(hub, &cert, reason, &actor).await
}

/// The reason code to record (0 when none is given), if it is one we accept.
pub fn check_reason(reason: Option<i64>) -> Result<i64, Error> {
    let reason = reason.unwrap_or(0);
    if !ALLOWED_REASONS.contains(&reason) {
        return Err(Error::new(
            ErrorKind::BadRevocationReason,
            format!(
                "revocation reason {reason} is not allowed; use one of 0 (unspecified), 1 (keyCompromise), 3 (affiliationChanged), 4 (superseded), 5 (cessationOfOperation)"
            ),
        ));
    }
    Ok(reason)
}

/// Revokes a certificate the caller may revoke; the next CRL lists it.
pub async fn revoke_certificate(
    hub: &Hub,
    cert: &Certificate,
    reason: i64,
    actor: &Actor,
) -> Result<(), Error> {
    let already = || {
        Error::new(
            ErrorKind::AlreadyRevoked,
            "the certificate is already revoked",
        )
    };
    if cert.status == CertificateStatus::Revoked {
        return Err(already());
    }
    match hub.store.revoke_certificate(&cert.id, reason, now()).await {
        Ok(()) => {}
        Err(StoreError::Guard) => return Err(already()),
        Err(e) => return Err(e.into()),
    }
    metrics::counter!("acmehub_revocations_total").increment(1);
    tracing::info!(certificate = %cert.id, serial = %cert.serial, reason, actor = %actor.label(), "certificate revoked");
    // A managed certificate serving it notices now (and renews, when it may).
    if let Err(e) = hub.store.nudge_managed(&cert.id).await {
        tracing::warn!(certificate = %cert.id, error = %e, "telling its managed certificate failed");
    }
    audit::record(
        hub,
        Some(&cert.instance_id),
        actor,
        "certificate.revoke",
        ("certificate", &cert.id),
        serde_json::json!({"serial": cert.serial, "reason": reason}),
    )
    .await;
    Ok(())
}

async fn holds_authorizations(
    hub: &Hub,
    account: &Account,
    identifiers: &[Identifier],
) -> Result<bool, Error> {
    for id in identifiers {
        let base = Identifier {
            kind: id.kind,
            value: id.base_name().to_string(),
        };
        // Any challenge type proves control for revocation (RFC 8555 §7.6).
        if hub
            .store
            .reusable_authz(
                &account.id,
                &base,
                id.is_wildcard(),
                now(),
                &ChallengeType::ALL,
            )
            .await?
            .is_none()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The local CA's current CRL (DER), listing every revoked, unexpired certificate.
pub async fn current_crl(hub: &Hub) -> Result<Vec<u8>, Error> {
    let now = now();
    let revoked = hub
        .store
        .revoked_certificates(&CertificateIssuer::Local, now)
        .await?;
    let to_time = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .map_err(|e| Error::internal("building the CRL", e))
    };
    let entries = revoked
        .iter()
        .filter_map(|r| {
            Some(Ok(RevokedEntry {
                serial: unhex(&r.serial)?,
                revoked_at: match to_time(r.revoked_at) {
                    Ok(t) => t,
                    Err(e) => return Some(Err(e)),
                },
                reason: u8::try_from(r.reason).unwrap_or(0),
            }))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    // The CRL number only has to grow; the clock does that across replicas too.
    hub.ca
        .crl(
            &entries,
            now as u64,
            to_time(now)?,
            to_time(now + 24 * 3600)?,
        )
        .map_err(|e| Error::internal("signing the CRL", e))
}

/// A suggested renewal window (RFC 9773 §4.2), as unix times, and how many
/// seconds the client should wait before asking again (`Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalWindow {
    pub start: i64,
    pub end: i64,
    pub retry_after: u64,
}

/// How long a window computed here holds.
const WINDOW_HOLDS_SECS: u64 = 6 * 3600;

/// The renewal window for a certificate of this instance, by ARI id: right
/// now once it is revoked; for a relayed certificate the upstream CA's
/// window when it offers one; else the middle of the last third of its
/// lifetime.
pub async fn renewal_info(
    hub: &Hub,
    instance: &Instance,
    ari_id: &str,
) -> Result<RenewalWindow, Error> {
    crate::ca::parse_ari_cert_id(ari_id)?;
    let cert = hub
        .store
        .certificate_by_ari_id(&instance.id, ari_id)
        .await?
        .ok_or_else(|| {
            Error::not_found("no certificate with this ARI identifier was issued by this instance")
        })?;
    let now = now();
    if cert.status == CertificateStatus::Revoked {
        return Ok(RenewalWindow {
            start: now - 3600,
            end: now,
            retry_after: WINDOW_HOLDS_SECS,
        });
    }
    if let CertificateIssuer::CaAccount(_) = cert.issuer {
        if let Some((start, end, holds)) =
            crate::issuance::relay::upstream_renewal_info(hub, &cert).await
        {
            return Ok(RenewalWindow {
                start,
                end,
                retry_after: holds.clamp(60, WINDOW_HOLDS_SECS),
            });
        }
    }
    let lifetime = cert.not_after - cert.not_before;
    let start = cert.not_after - lifetime / 3;
    let end = cert.not_after - lifetime / 6;
    Ok(RenewalWindow {
        start,
        end,
        retry_after: WINDOW_HOLDS_SECS,
    })
}
