//! Managed challenges for clients that talk ACME to another CA: the hub
//! publishes their DNS-01 TXT records through APIs those clients already
//! speak.
//!
//! - acme-dns (`/acme-dns/{instance}/register`, `/update` with `X-Api-User`
//!   / `X-Api-Key`): each registration owns one random label of the
//!   technical zone, and may touch only that label. Unlike acme-dns, which
//!   keeps the latest 2, a label holds up to `max_txt_values_per_name`
//!   values at once (wildcard + apex, parallel orders); a write beyond that
//!   is refused with 409 until one expires, never dropped silently.
//!   A registration may name the networks its updates may come from
//!   (`allowfrom`, CIDR; host bits are cleared as acme-dns does); an update
//!   from elsewhere gets the same 401 as a wrong key. `/health` answers 200.
//! - lego httpreq (`/httpreq/{instance}/present`, `/cleanup`): HTTP Basic
//!   (or Bearer) with a write token of the instance; the name must be
//!   covered by one of the instance's zone bindings or delegations. The
//!   `fqdn` is `_acme-challenge.<name>`, or the delegation's target in the
//!   technical zone when the client followed the customer's CNAME (lego
//!   does by default); the record goes to the same place either way.
//!
//! Both read a JSON body whatever its Content-Type says (acme.sh posts JSON
//! as a form, as the original acme-dns accepts), and only after the caller
//! was authenticated: a stranger gets 401, never a body's errors.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use crate::admin::auth::principal_for;
use crate::admin::{ApiError, parse_json};
use crate::audit::{self, Actor};
use crate::dns::delegations::{cname_name, zone_name};
use crate::dns::publish::{add_to_technical_zone, solver_for};
use crate::error::Error;
use crate::hub::Hub;
use crate::policy::{ClientAddr, Identifier, Pattern, client_ip};
use crate::secrets::token_hash;
use crate::store::{AcmeDnsAccount, Instance};
use crate::tenancy::principals::{Principal, request_token};
use crate::util::{now, random_bytes, random_id};

/// How long an acme-dns TXT value is served.
const ACME_DNS_RECORD_LIFETIME: i64 = 86400;
/// Most networks one acme-dns registration may list in `allowfrom`.
const MAX_ALLOWFROM: usize = 100;

pub fn router() -> axum::Router<Arc<Hub>> {
    axum::Router::new()
        .route("/acme-dns/{instance}/register", post(acme_dns_register))
        .route("/acme-dns/{instance}/update", post(acme_dns_update))
        .route("/acme-dns/{instance}/health", get(acme_dns_health))
        .route("/httpreq/{instance}/present", post(httpreq_present))
        .route("/httpreq/{instance}/cleanup", post(httpreq_cleanup))
}

/// The instance a write token may publish for (404 when it cannot see it).
async fn writer(
    hub: &Hub,
    headers: &HeaderMap,
    instance: &str,
) -> Result<(Principal, Instance), ApiError> {
    let token = request_token(headers).ok_or(ApiError::Unauthenticated)?;
    let who = principal_for(hub, &token).await?;
    who.require_write()?;
    let instance = who.instance(hub, instance).await?;
    Ok((who, instance))
}

/// What `/register` may carry: the networks updates may come from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AcmeDnsRegister {
    #[serde(default)]
    allowfrom: Vec<String>,
}

/// `allowfrom` checked and normalized (`192.168.100.1/24` is
/// `192.168.100.0/24`); a bad entry names itself and nothing is stored.
fn allowfrom(texts: &[String]) -> Result<Vec<String>, Error> {
    if texts.len() > MAX_ALLOWFROM {
        return Err(Error::invalid(
            "allowfrom",
            format!("allowfrom lists at most {MAX_ALLOWFROM} networks"),
        ));
    }
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            Pattern::parse_network(text)
                .map(|net| net.to_string())
                .map_err(|why| Error::invalid(format!("allowfrom[{i}]"), why))
        })
        .collect()
}

async fn acme_dns_register(
    State(hub): State<Arc<Hub>>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (who, instance) = writer(&hub, &headers, &instance).await?;
    let request: AcmeDnsRegister = if body.iter().all(u8::is_ascii_whitespace) {
        AcmeDnsRegister::default()
    } else {
        parse_json(&body)?
    };
    let allowfrom = allowfrom(&request.allowfrom)?;
    let zone = zone_name(&hub)?.to_string();
    let label = crate::dns::delegations::random_label();
    let password = crate::util::b64(&random_bytes::<30>());
    let account = AcmeDnsAccount {
        username: random_id(),
        instance_id: instance.id.clone(),
        key_hash: token_hash(&password),
        label: label.clone(),
        allowfrom: allowfrom.clone(),
        created_at: now(),
    };
    hub.store.insert_acme_dns_account(&account).await?;
    audit::record(
        &hub,
        Some(&instance.id),
        &who.actor(),
        "acme-dns.register",
        ("acme-dns-account", &account.username),
        json!({"fulldomain": format!("{label}.{zone}"), "allowfrom": allowfrom}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "username": account.username,
            "password": password,
            "fulldomain": format!("{label}.{zone}"),
            "subdomain": label,
            "allowfrom": allowfrom,
        })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AcmeDnsUpdate {
    subdomain: String,
    txt: String,
}

/// A TXT value as ACME clients send them: printable ASCII, at most 255 bytes.
fn check_txt(value: &str, field: &str) -> Result<(), Error> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{field} must be 1 to 255 printable characters"),
        ))
    }
}

async fn acme_dns_update(
    State(hub): State<Arc<Hub>>,
    Path(instance): Path<String>,
    peer: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (Some(user), Some(key)) = (header("x-api-user"), header("x-api-key")) else {
        return Err(ApiError::Unauthenticated);
    };
    let account = hub
        .store
        .acme_dns_account(&user)
        .await?
        .filter(|a| a.key_hash == token_hash(&key))
        .ok_or(ApiError::Unauthenticated)?;
    let instance = hub
        .store
        .instance_by_ref(&instance)
        .await?
        .filter(|i| i.id == account.instance_id)
        .ok_or(ApiError::Unauthenticated)?;
    let from = peer.map(|Extension(ClientAddr(peer))| {
        client_ip(&hub.config.trusted_proxies, peer.ip(), &headers)
    });
    if !allowed_from(&account, from) {
        // As acme-dns answers it: the same refusal as a wrong key.
        tracing::info!(user = %account.username, from = ?from, "acme-dns update from outside allowfrom");
        return Err(ApiError::Unauthenticated);
    }
    let update: AcmeDnsUpdate = parse_json(&body)?;
    if update.subdomain != account.label {
        return Err(Error::unauthorized("this account may update only its own subdomain").into());
    }
    check_txt(&update.txt, "txt")?;
    let zone = zone_name(&hub)?;
    let name = format!("{}.{zone}", account.label);
    add_to_technical_zone(&hub, &name, &update.txt, ACME_DNS_RECORD_LIFETIME).await?;
    audit::record(
        &hub,
        Some(&instance.id),
        &Actor::Token(format!("acme-dns:{}", account.username)),
        "acme-dns.update",
        ("acme-dns-account", &account.username),
        json!({"record": name}),
    )
    .await;
    Ok(Json(json!({"txt": update.txt})).into_response())
}

/// Whether an update from `from` is inside the registration's `allowfrom`
/// (an empty list allows any address; an unknown address none).
fn allowed_from(account: &AcmeDnsAccount, from: Option<std::net::IpAddr>) -> bool {
    if account.allowfrom.is_empty() {
        return true;
    }
    let Some(from) = from else {
        return false;
    };
    let from = Identifier::from_ip(from.to_canonical());
    account
        .allowfrom
        .iter()
        .filter_map(|net| Pattern::parse_network(net).ok())
        .any(|net| net.allows(&from))
}

/// `GET /acme-dns/{instance}/health`: 200, as acme-dns answers it.
async fn acme_dns_health() -> StatusCode {
    StatusCode::OK
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpreqRecord {
    fqdn: String,
    value: String,
}

/// The `_acme-challenge` name an httpreq `fqdn` stands for: the name
/// itself, or, when the client followed the customer's CNAME (lego does by
/// default), the delegation of this instance whose target in the technical
/// zone it is. Nothing else: another instance's label, an acme-dns label or
/// any other name is refused.
async fn challenge_name(hub: &Hub, instance: &Instance, fqdn: &str) -> Result<String, Error> {
    let name = fqdn.trim_end_matches('.').to_ascii_lowercase();
    if let Some(domain) = name.strip_prefix("_acme-challenge.") {
        Identifier::dns(domain).map_err(|e| Error::invalid("fqdn", e.detail))?;
        return Ok(name);
    }
    let label = hub
        .technical_zone
        .as_ref()
        .and_then(|zone| name.strip_suffix(&format!(".{}", zone.name())));
    if let Some(label) = label {
        let delegations = hub.store.delegations(&instance.id).await?;
        if let Some(d) = delegations.iter().find(|d| d.label == label) {
            return Ok(cname_name(d));
        }
    }
    Err(Error::invalid(
        "fqdn",
        format!(
            "fqdn must be an _acme-challenge name, or the CNAME target of a delegation of \
             instance {:?} in the technical zone; {fqdn:?} is neither",
            instance.name
        ),
    ))
}

async fn httpreq(
    hub: &Hub,
    headers: &HeaderMap,
    instance: &str,
    body: &[u8],
    present: bool,
) -> Result<Response, ApiError> {
    let (who, instance) = writer(hub, headers, instance).await?;
    let record: HttpreqRecord = parse_json(body)?;
    let name = challenge_name(hub, &instance, &record.fqdn).await?;
    check_txt(&record.value, "value")?;
    let solver = solver_for(hub, &instance, &name).await?;
    if present {
        solver.publish(hub, &name, &record.value).await?;
        solver.wait_visible(hub, &name, &record.value).await?;
    } else {
        solver.cleanup(hub, &name, &record.value).await?;
    }
    audit::record(
        hub,
        Some(&instance.id),
        &who.actor(),
        if present {
            "httpreq.present"
        } else {
            "httpreq.cleanup"
        },
        ("record", &name),
        json!({"via": solver.describe()}),
    )
    .await;
    Ok(Json(json!({"fqdn": record.fqdn, "ok": true})).into_response())
}

async fn httpreq_present(
    State(hub): State<Arc<Hub>>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    httpreq(&hub, &headers, &instance, &body, true).await
}

async fn httpreq_cleanup(
    State(hub): State<Arc<Hub>>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    httpreq(&hub, &headers, &instance, &body, false).await
}
