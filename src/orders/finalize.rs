//! Finalization (RFC 8555 §7.4): the CSR is checked against the order, the
//! intent to sign is recorded with its serial, then the CA signs.

use crate::ca::{LeafRequest, ari_cert_id, parse_csr};
use crate::error::{Error, ErrorKind};
use crate::hub::Hub;
use crate::store::{
    Account, Certificate, CertificateIntent, CertificateIssuer, Instance, Issuer, Order,
    OrderStatus, StoreError,
};
use crate::util::{hex, now, random_bytes};

use super::effective_order_status;
use super::keys::spki_matches_jwk;

/// A random 128-bit positive serial whose DER content is exactly 16 bytes
/// (top bit clear, first byte non-zero), so its hex form is unambiguous.
pub fn new_serial() -> [u8; 16] {
    let mut serial = random_bytes::<16>();
    serial[0] = (serial[0] & 0x7f).max(1);
    serial
}

/// Finalizes a ready order with the client's CSR and signs the certificate.
/// The CSR's names are checked against the order and, again, against the
/// account's access-key policy (which may have changed since newOrder).
pub async fn finalize(
    hub: &std::sync::Arc<Hub>,
    instance: &Instance,
    account: &Account,
    order_id: &str,
    csr_der: &[u8],
) -> Result<Order, Error> {
    let order = hub
        .store
        .order(&account.instance_id, order_id)
        .await?
        .filter(|o| o.account_id == account.id)
        .ok_or_else(|| Error::not_found("no such order for this account"))?;
    let status = effective_order_status(&order, now());
    if status != OrderStatus::Ready {
        return Err(Error::new(
            ErrorKind::OrderNotReady,
            format!(
                "the order is {}, not ready: it can only be finalized once all its authorizations are valid",
                status.as_str()
            ),
        ));
    }
    let csr = parse_csr(csr_der)?;
    if csr.identifiers != order.identifiers {
        let names = |ids: &[crate::policy::Identifier]| {
            ids.iter()
                .map(|i| i.value.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(Error::new(
            ErrorKind::BadCsr,
            format!(
                "the CSR must name exactly the order's identifiers [{}], but names [{}]",
                names(&order.identifiers),
                names(&csr.identifiers)
            ),
        ));
    }
    if let Some(policy) =
        crate::tenancy::access_keys::account_policy(hub, instance, account).await?
    {
        crate::tenancy::access_keys::check_identifiers(&policy, &csr.identifiers)?;
    }
    if spki_matches_jwk(&csr.spki_der, &account.jwk) {
        return Err(Error::new(
            ErrorKind::BadCsr,
            "the CSR's key must not be the account key",
        ));
    }
    match instance.issuer {
        Issuer::Upstream => relay(hub, account, order, csr_der).await,
        Issuer::Local => sign(hub, instance, account, order, &csr.spki_der).await,
    }
}

/// The client's CSR goes upstream as it is; the order is `processing`
/// until the upstream certificate arrives.
async fn relay(
    hub: &std::sync::Arc<Hub>,
    account: &Account,
    order: Order,
    csr_der: &[u8],
) -> Result<Order, Error> {
    match hub.store.begin_relayed_issuance(&order.id, csr_der).await {
        Ok(()) => {}
        Err(StoreError::Guard) => {
            return Err(Error::new(
                ErrorKind::OrderNotReady,
                "the order was finalized by another request",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    crate::issuance::relay::spawn(hub.clone(), order.id.clone());
    hub.store
        .order(&account.instance_id, &order.id)
        .await?
        .ok_or_else(|| Error::internal("finalizing", "order vanished"))
}

/// The local CA signs: the intent (with its serial) is recorded first, so a
/// crash resumes with the same serial instead of losing or duplicating it.
async fn sign(
    hub: &Hub,
    instance: &Instance,
    account: &Account,
    order: Order,
    spki_der: &[u8],
) -> Result<Order, Error> {
    let now = now();
    let validity = super::order_validity_days(hub, instance, order.profile.as_deref()) * 86400;
    let not_before = order.not_before.unwrap_or(now - 60);
    let not_after = order.not_after.unwrap_or(not_before + validity);
    let serial = new_serial();
    let intent = CertificateIntent {
        instance_id: account.instance_id.clone(),
        account_id: account.id.clone(),
        order_id: order.id.clone(),
        serial: hex(&serial),
        issuer: CertificateIssuer::Local,
        identifiers: order.identifiers.clone(),
        spki: spki_der.to_vec(),
        not_before,
        not_after,
    };
    let cert = match hub.store.begin_issuance(&intent).await {
        Ok(cert) => cert,
        Err(StoreError::Guard) => {
            return Err(Error::new(
                ErrorKind::OrderNotReady,
                "the order was finalized by another request",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if sign_recorded(hub, &cert, now).await? {
        // What complete_issuance wrote, without reading it back.
        let order = Order {
            status: OrderStatus::Valid,
            certificate_id: Some(cert.id),
            updated_at: now,
            ..order
        };
        hub.store.order_made_valid(&order);
        return Ok(order);
    }
    hub.store
        .order(&account.instance_id, &order.id)
        .await?
        .ok_or_else(|| Error::internal("finalizing", "order vanished"))
}

/// Signs a certificate whose intent is recorded, and stores the result
/// (the order's `updated_at` is `at`). True when its order became valid
/// with it; false when another worker stored it first or the order had
/// moved on (read it to know its state).
pub async fn sign_recorded(hub: &Hub, cert: &Certificate, at: i64) -> Result<bool, Error> {
    let serial = unhex(&cert.serial)
        .ok_or_else(|| Error::internal("signing", "stored serial is not hex"))?;
    let to_time = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t).map_err(|e| Error::internal("signing", e))
    };
    let request = LeafRequest {
        serial: &serial,
        spki_der: &cert.spki,
        identifiers: &cert.identifiers,
        not_before: to_time(cert.not_before)?,
        not_after: to_time(cert.not_after)?,
        crl_url: &hub.crl_url(),
    };
    let signed = hub.ca.sign(&request).map_err(|e| match e {
        crate::ca::CaError::InvalidRequest(why) => Error::malformed(format!(
            "the certificate cannot be signed as ordered: {why}"
        )),
        other => Error::internal("signing the certificate", other),
    });
    let (issued, ari) = match signed.and_then(|issued| Ok((ari_cert_id(&issued.der)?, issued))) {
        Ok((ari, issued)) => (issued, ari),
        Err(error) => {
            fail_recorded(hub, cert, &error).await?;
            return Err(error);
        }
    };
    let event = crate::audit::event(
        Some(&cert.instance_id),
        &crate::audit::Actor::Account(cert.account_id.clone()),
        "certificate.issue",
        ("certificate", &cert.id),
        serde_json::json!({"serial": cert.serial, "order": cert.order_id, "identifiers": cert.identifiers}),
    );
    let order_valid = match hub
        .store
        .complete_issuance(cert, &issued.der, &issued.chain_pem, &ari, Some(&event), at)
        .await
    {
        Ok(order_valid) => order_valid,
        Err(StoreError::Guard) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    metrics::counter!("acmehub_certificates_issued_total", "issuer" => Issuer::Local.as_str())
        .increment(1);
    tracing::info!(certificate = %cert.id, order = %cert.order_id, serial = %cert.serial, "certificate issued");
    Ok(order_valid)
}

/// Ends an issuance whose certificate could not be signed: the intent is
/// marked failed and the order invalid with `error`, with an audit event and
/// one log line, so that neither a resume nor the stale-work sweep meets it
/// again.
async fn fail_recorded(hub: &Hub, cert: &Certificate, error: &Error) -> Result<(), Error> {
    let problem = crate::error::Problem::from_error(error).to_json();
    let event = crate::audit::event(
        Some(&cert.instance_id),
        &crate::audit::Actor::Hub,
        "certificate.fail",
        ("certificate", &cert.id),
        serde_json::json!({"serial": cert.serial, "order": cert.order_id, "error": error.detail}),
    );
    if hub
        .store
        .fail_issuance(cert, &problem, Some(&event))
        .await?
    {
        metrics::counter!("acmehub_certificates_failed_total", "issuer" => Issuer::Local.as_str())
            .increment(1);
        tracing::warn!(certificate = %cert.id, order = %cert.order_id, serial = %cert.serial,
            kind = ?error.kind, error = %error.detail, "certificate could not be signed; order invalid");
    }
    Ok(())
}

/// Parses lowercase or uppercase hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_positive_and_sixteen_bytes() {
        for _ in 0..200 {
            let s = new_serial();
            assert!(s[0] > 0 && s[0] < 0x80);
        }
        assert_eq!(unhex(&hex(&[0, 1, 0xab])).unwrap(), vec![0, 1, 0xab]);
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }
}
