//! Admin endpoints that look at what the hub did: orders, the certificate
//! inventory (with revocation), and the audit log.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::views::{CertificateView, EventListing, EventView, Listing, OrderView, upstream_view};
use super::{ApiJson, ApiResult, Page};
use crate::error::Error;
use crate::hub::Hub;
use crate::store::{CertificateFilter, EventFilter, Order, OrderFilter, OrderStatus};
use crate::tenancy::principals::{Principal, Scope};
use crate::util::now;

type Hub_ = State<Arc<Hub>>;

async fn order_view(hub: &Hub, order: &Order, now: i64) -> Result<OrderView, Error> {
    let mut authorizations = Vec::with_capacity(order.authz_ids.len());
    for id in &order.authz_ids {
        if let Some(a) = hub.store.authorization(&order.instance_id, id).await? {
            authorizations.push(a);
        }
    }
    let mut view = OrderView::new(order, &authorizations, now);
    if let Some(u) = hub.store.upstream_order(&order.id).await? {
        let account = match &u.ca_account_id {
            Some(id) => hub
                .store
                .ca_account(&order.instance_id, id)
                .await?
                .map(|a| a.name),
            None => None,
        };
        view.upstream = Some(upstream_view(&u, account));
    }
    Ok(view)
}

/// Filters of the order listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// `pending`, `ready`, `processing`, `valid` or `invalid` (as stored).
    pub status: Option<String>,
    /// Only this ACME account's orders (its id).
    pub account: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/orders", tag = "orders",
    params(("i" = String, Path, description = "Instance id or name"), OrderQuery, Page),
    responses((status = 200, description = "Orders, newest first, with their authorizations and errors", body = Listing<OrderView>),
              (status = 400, description = "A filter is invalid"),
              (status = 404, description = "No such instance")))]
pub async fn list_orders(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
    Query(query): Query<OrderQuery>,
    Query(page): Query<Page>,
) -> ApiResult<Json<Listing<OrderView>>> {
    let instance = who.instance(&hub, &i).await?;
    let (limit, offset) = page.resolve()?;
    let status = query
        .status
        .as_deref()
        .map(|status| {
            OrderStatus::from_text(status).ok_or_else(|| {
                Error::invalid(
                    "status",
                    "status must be pending, ready, processing, valid or invalid",
                )
            })
        })
        .transpose()?;
    let filter = OrderFilter {
        status,
        account_id: query.account,
        limit: limit + 1,
        offset,
    };
    let orders = hub.store.orders_for_instance(&instance.id, &filter).await?;
    let now = now();
    let mut views = Vec::with_capacity(orders.len());
    for order in &orders {
        views.push(order_view(&hub, order, now).await?);
    }
    Ok(Json(Listing::page(views, limit, offset)))
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/orders/{id}", tag = "orders",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Order id")),
    responses((status = 200, description = "The order", body = OrderView),
              (status = 404, description = "No such order")))]
pub async fn show_order(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<Json<OrderView>> {
    let instance = who.instance(&hub, &i).await?;
    let order =
        hub.store.order(&instance.id, &id).await?.ok_or_else(|| {
            Error::not_found(format!("there is no order {id:?} in this instance"))
        })?;
    Ok(Json(order_view(&hub, &order, now()).await?))
}

/// Filters of the certificate inventory.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CertificateQuery {
    /// `active`, `expired` or `revoked`.
    pub status: Option<String>,
    /// Certificates for this name, or for names under it.
    pub identifier: Option<String>,
    /// Active certificates that expire within this many days.
    pub expiring_within_days: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/certificates", tag = "certificates",
    params(("i" = String, Path, description = "Instance id or name"), CertificateQuery, Page),
    responses((status = 200, description = "Certificates, newest first", body = Listing<CertificateView>),
              (status = 400, description = "A filter is invalid"),
              (status = 404, description = "No such instance")))]
pub async fn list_certificates(
    State(hub): Hub_,
    who: Principal,
    Path(i): Path<String>,
    Query(query): Query<CertificateQuery>,
    Query(page): Query<Page>,
) -> ApiResult<Json<Listing<CertificateView>>> {
    let instance = who.instance(&hub, &i).await?;
    let (limit, offset) = page.resolve()?;
    if let Some(status) = &query.status {
        if !matches!(status.as_str(), "active" | "expired" | "revoked") {
            return Err(
                Error::invalid("status", "status must be active, expired or revoked").into(),
            );
        }
    }
    if let Some(days) = query.expiring_within_days {
        if !(0..=3650).contains(&days) {
            return Err(Error::invalid(
                "expiring_within_days",
                "expiring_within_days must be 0 to 3650",
            )
            .into());
        }
    }
    let identifier = query
        .identifier
        .as_deref()
        .map(normalize_identifier)
        .transpose()?;
    let filter = CertificateFilter {
        status: query.status,
        identifier,
        expiring_within_days: query.expiring_within_days,
        limit: limit + 1,
        offset,
    };
    let now = now();
    let certs = hub
        .store
        .certificates_for_instance(&instance.id, &filter, now)
        .await?;
    let views = certs
        .iter()
        .map(|c| CertificateView::new(c, now, false))
        .collect();
    Ok(Json(Listing::page(views, limit, offset)))
}

/// An identifier filter as stored: an IP address, or a DNS name in
/// lowercase A-label form without trailing dot or wildcard label.
fn normalize_identifier(text: &str) -> Result<String, Error> {
    let bad = || {
        Error::invalid(
            "identifier",
            "identifier must be a DNS name or an IP address",
        )
    };
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(ip.to_string());
    }
    let ascii = idna::domain_to_ascii(text.trim_end_matches('.')).map_err(|_| bad())?;
    let name = ascii.strip_prefix("*.").unwrap_or(&ascii);
    if name.is_empty() || name.len() > 253 {
        return Err(bad());
    }
    Ok(name.to_string())
}

async fn find_certificate(
    hub: &Hub,
    who: &Principal,
    i: &str,
    id: &str,
) -> Result<crate::store::Certificate, Error> {
    let instance = who.instance(hub, i).await?;
    hub.store
        .certificate_by_ref(&instance.id, id)
        .await?
        .filter(|c| c.status != crate::store::CertificateStatus::Signing)
        .ok_or_else(|| Error::not_found(format!("there is no certificate {id:?} in this instance")))
}

#[utoipa::path(get, path = "/api/v1/instances/{i}/certificates/{id}", tag = "certificates",
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Certificate id or serial (hex)")),
    responses((status = 200, description = "The certificate with its PEM chain", body = CertificateView),
              (status = 404, description = "No such certificate")))]
pub async fn show_certificate(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
) -> ApiResult<Json<CertificateView>> {
    let cert = find_certificate(&hub, &who, &i, &id).await?;
    Ok(Json(CertificateView::new(&cert, now(), true)))
}

/// A revocation request.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// RFC 5280 reason code: 0 unspecified (default), 1 keyCompromise,
    /// 3 affiliationChanged, 4 superseded, 5 cessationOfOperation.
    pub reason: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/instances/{i}/certificates/{id}/revoke", tag = "certificates",
    request_body = RevokeRequest,
    params(("i" = String, Path, description = "Instance id or name"),
           ("id" = String, Path, description = "Certificate id or serial (hex)")),
    responses((status = 200, description = "Revoked; the next CRL lists it", body = CertificateView),
              (status = 400, description = "The reason is not allowed"),
              (status = 404, description = "No such certificate"),
              (status = 409, description = "Already revoked")))]
pub async fn revoke_certificate(
    State(hub): Hub_,
    who: Principal,
    Path((i, id)): Path<(String, String)>,
    ApiJson(request): ApiJson<RevokeRequest>,
) -> ApiResult<Json<CertificateView>> {
    let cert = find_certificate(&hub, &who, &i, &id).await?;
    let reason = crate::orders::check_reason(request.reason)
        .map_err(|e| Error::invalid("reason", e.detail))?;
    crate::orders::revoke_certificate(&hub, &cert, reason, &who.actor()).await?;
    let cert = find_certificate(&hub, &who, &i, &cert.id).await?;
    Ok(Json(CertificateView::new(&cert, now(), false)))
}

/// Filters of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only this instance's events (id or name).
    pub instance: Option<String>,
    /// Only this action, e.g. `certificate.revoke`.
    pub action: Option<String>,
    /// Only events about this object id.
    pub object: Option<String>,
    /// Only events older than this `seq` (the next page's cursor).
    pub before: Option<i64>,
    /// Events per page, 1 to 1000 (default 100).
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(EventQuery),
    responses((status = 200, description = "Audit events, newest first", body = EventListing),
              (status = 400, description = "A filter is invalid"),
              (status = 404, description = "No such instance")))]
pub async fn list_events(
    State(hub): Hub_,
    who: Principal,
    Query(query): Query<EventQuery>,
) -> ApiResult<Json<EventListing>> {
    let (limit, _) = Page {
        limit: query.limit,
        offset: None,
    }
    .resolve()?;
    let names: HashMap<String, String> = hub
        .store
        .instances()
        .await?
        .into_iter()
        .map(|i| (i.id, i.name))
        .collect();
    let instance_ids = match (&query.instance, &who.scope) {
        (Some(i), _) => Some(vec![who.instance(&hub, i).await?.id]),
        (None, Scope::Instance(id)) => Some(vec![id.clone()]),
        (None, Scope::Admin) => None,
    };
    let events = hub
        .store
        .events(&EventFilter {
            instance_ids,
            action: query.action,
            object_id: query.object,
            before: query.before,
            limit: limit + 1,
        })
        .await?;
    let more = events.len() as i64 > limit;
    let items: Vec<EventView> = events
        .iter()
        .take(limit as usize)
        .map(|e| {
            let name = e.instance_id.as_ref().and_then(|id| names.get(id).cloned());
            EventView::new(e, name)
        })
        .collect();
    let next_before = if more {
        items.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Json(EventListing { items, next_before }))
}
