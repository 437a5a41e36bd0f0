//! Delegations (DESIGN: *delegation*): a customer hands `_acme-challenge.<domain>`
//! to a random label of the technical zone with one CNAME; the hub then
//! answers DNS-01 for that domain without any credential of the customer's.
//! Labels are random, never derived from the domain.

use serde::Deserialize;
use serde_json::json;

use crate::audit::{self, Actor};
use crate::error::{Error, ErrorKind};
use crate::hub::Hub;
use crate::store::{Delegation, DelegationStatus, Instance, StoreError};
use crate::util::{now, random_bytes, random_id};

/// A delegation to create.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegationSettings {
    /// The name whose `_acme-challenge` is delegated, e.g. `shop.customer.com`.
    pub domain: String,
}

/// The technical zone's name, or a clear error when none is configured.
pub fn zone_name(hub: &Hub) -> Result<&str, Error> {
    hub.technical_zone
        .as_ref()
        .map(|z| z.name())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Conflict,
                "this hub serves no technical zone: configure [dns.technical_zone] to use delegations or acme-dns",
            )
        })
}

/// `_acme-challenge.<domain>`: the name the customer creates.
pub fn cname_name(d: &Delegation) -> String {
    format!("_acme-challenge.{}", d.domain)
}

/// `<label>.<technical zone>`: where it must point.
pub fn cname_target(hub: &Hub, d: &Delegation) -> Result<String, Error> {
    Ok(format!("{}.{}", d.label, zone_name(hub)?))
}

/// A random DNS label: 20 lowercase hex digits (80 bits), for delegations
/// and acme-dns registrations alike.
pub fn random_label() -> String {
    crate::util::hex(&random_bytes::<10>())
}

pub async fn create_delegation(
    hub: &Hub,
    actor: &Actor,
    instance: &Instance,
    s: &DelegationSettings,
) -> Result<Delegation, Error> {
    zone_name(hub)?;
    let domain = crate::dns::credentials::parse_zone(
        s.domain.trim_start_matches("_acme-challenge."),
        "domain",
    )?;
    let mut delegation = Delegation {
        id: random_id(),
        instance_id: instance.id.clone(),
        domain,
        label: random_label(),
        status: DelegationStatus::Missing,
        detail: String::new(),
        checked_at: None,
        created_at: now(),
    };
    hub.store.insert_delegation(&delegation).await?;
    audit::record(
        hub,
        Some(&instance.id),
        actor,
        "delegation.create",
        ("delegation", &delegation.id),
        json!({"domain": delegation.domain, "cname_target": cname_target(hub, &delegation)?}),
    )
    .await;
    check(hub, &mut delegation).await?;
    Ok(delegation)
}

/// Looks the CNAME up on the customer zone's authoritative servers and
/// records `ok`, `missing` or `mismatch` (with what was found). A change of
/// status is an audit event.
pub async fn check(hub: &Hub, d: &mut Delegation) -> Result<(), Error> {
    let name = cname_name(d);
    let target = cname_target(hub, d)?;
    let (status, detail) = match crate::dns::propagation::cname_at(
        hub.validator.resolver(),
        &name,
        hub.config.dns.authoritative_port,
    )
    .await
    {
        Err(why) => (
            DelegationStatus::Missing,
            format!("cannot check {name}: {why}"),
        ),
        Ok(found) => {
            let wrong: Vec<String> = found
                .iter()
                .filter_map(|(server, t)| match t {
                    Some(t) if *t != target => Some(format!("{server} has {name} CNAME {t}")),
                    _ => None,
                })
                .collect();
            let absent: Vec<&str> = found
                .iter()
                .filter(|(_, t)| t.is_none())
                .map(|(s, _)| s.as_str())
                .collect();
            if !wrong.is_empty() {
                (
                    DelegationStatus::Mismatch,
                    format!("{}; it must be {target}", wrong.join("; ")),
                )
            } else if !absent.is_empty() {
                (
                    DelegationStatus::Missing,
                    format!(
                        "no CNAME at {name} on {}; create {name} CNAME {target}",
                        absent.join(", ")
                    ),
                )
            } else {
                (
                    DelegationStatus::Ok,
                    format!("{name} CNAME {target} on every nameserver"),
                )
            }
        }
    };
    let at = now();
    if d.status == DelegationStatus::Ok && status != DelegationStatus::Ok {
        crate::notify::emit(
            hub,
            &d.instance_id,
            "delegation.drift",
            json!({"domain": d.domain, "status": status.as_str(), "detail": detail,
                   "cname_name": name, "cname_target": target}),
        )
        .await;
    }
    if status != d.status && d.checked_at.is_some() {
        audit::record(
            hub,
            Some(&d.instance_id),
            &Actor::Hub,
            "delegation.status",
            ("delegation", &d.id),
            json!({"domain": d.domain, "from": d.status.as_str(), "to": status.as_str(), "detail": detail}),
        )
        .await;
    }
    hub.store
        .update_delegation_status(&d.id, status, &detail, at)
        .await?;
    d.status = status;
    d.detail = detail;
    d.checked_at = Some(at);
    Ok(())
}

pub async fn delete_delegation(hub: &Hub, actor: &Actor, d: &Delegation) -> Result<(), Error> {
    hub.store
        .delete_delegation(&d.id)
        .await
        .map_err(|e| match e {
            StoreError::Guard => Error::not_found("the delegation was deleted meanwhile"),
            other => other.into(),
        })?;
    audit::record(
        hub,
        Some(&d.instance_id),
        actor,
        "delegation.delete",
        ("delegation", &d.id),
        json!({"domain": d.domain}),
    )
    .await;
    Ok(())
}

/// The daily re-check of every delegation; drift shows as events.
pub async fn recheck_all(hub: &Hub) -> Result<usize, Error> {
    let mut all = hub.store.all_delegations().await?;
    for d in &mut all {
        if let Err(e) = check(hub, d).await {
            tracing::warn!(delegation = %d.id, error = %e, "delegation check failed");
        }
    }
    Ok(all.len())
}
