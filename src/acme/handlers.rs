//! The ACME endpoints: parse, call `orders`, render. No state changes here.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::AcmeError;
use super::auth::{ByAccount, ByAccountOrKey, ByNewKey, Signed};
use super::resources;
use crate::error::{Error, ErrorKind};
use crate::hub::Hub;
use crate::jws::{AccountKey, Jws, KeyRef};
use crate::orders::{self, OrderRequest, Revoker};
use crate::store::CertificateIssuer;
use crate::util::{parse_rfc3339, rfc3339};

type AcmeResult = Result<Response, AcmeError>;

fn json_response(status: StatusCode, value: &Value, location: Option<String>) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response();
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

fn link(response: &mut Response, url: &str, rel: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("<{url}>;rel=\"{rel}\"")) {
        response.headers_mut().append(header::LINK, v);
    }
}

pub async fn directory(State(hub): State<Arc<Hub>>, Path(instance): Path<String>) -> AcmeResult {
    let instance = hub.instance(&instance).await?;
    let offer = orders::offer(&hub, &instance).await?;
    Ok(json_response(
        StatusCode::OK,
        &resources::directory(&hub, &instance, &offer),
        None,
    ))
}

/// RFC 8555 §7.2: HEAD answers 200, GET 204; the middleware adds the nonce.
pub async fn new_nonce(
    State(hub): State<Arc<Hub>>,
    Path(instance): Path<String>,
    method: axum::http::Method,
) -> AcmeResult {
    hub.instance(&instance).await?;
    let status = if method == axum::http::Method::HEAD {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    };
    Ok(status.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewAccountPayload {
    #[serde(default)]
    contact: Vec<String>,
    #[serde(default)]
    terms_of_service_agreed: bool,
    #[serde(default)]
    only_return_existing: bool,
    #[serde(default)]
    external_account_binding: Option<Value>,
}

pub async fn new_account(
    State(hub): State<Arc<Hub>>,
    Signed { instance, auth, .. }: Signed<ByNewKey>,
) -> AcmeResult {
    let payload: NewAccountPayload = auth.jws.payload_json()?;
    let request = orders::AccountRequest {
        contact: payload.contact,
        tos_agreed: payload.terms_of_service_agreed,
        only_return_existing: payload.only_return_existing,
        external_account_binding: payload.external_account_binding,
    };
    let (account, created) = orders::new_account(&hub, &instance, &auth.key, &request).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(
        status,
        &resources::account(&hub, &instance.name, &account),
        Some(hub.account_url(&instance.name, &account.id)),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountUpdate {
    contact: Option<Vec<String>>,
    status: Option<String>,
    #[serde(rename = "termsOfServiceAgreed")]
    _tos: Option<bool>,
    #[serde(rename = "orders")]
    _orders: Option<Value>,
}

pub async fn account(
    State(hub): State<Arc<Hub>>,
    Path((_, id)): Path<(String, String)>,
    Signed { instance, auth, .. }: Signed<ByAccount>,
) -> AcmeResult {
    let account = auth.account()?;
    if account.id != id {
        return Err(
            Error::unauthorized("the account URL does not match the signing account").into(),
        );
    }
    if !auth.jws.is_post_as_get() {
        let update: AccountUpdate = auth.jws.payload_json()?;
        orders::update_account(
            &hub,
            account,
            update.contact.as_deref(),
            update.status.as_deref(),
        )
        .await?;
    }
    let account = hub
        .store
        .account(&instance.id, &account.id)
        .await?
        .ok_or_else(|| Error::internal("reading the account", "vanished"))?;
    Ok(json_response(
        StatusCode::OK,
        &resources::account(&hub, &instance.name, &account),
        Some(hub.account_url(&instance.name, &account.id)),
    ))
}

/// Orders per page of the account's order list.
const ORDERS_PAGE: i64 = 100;

pub async fn account_orders(
    State(hub): State<Arc<Hub>>,
    Path((_, id)): Path<(String, String)>,
    query: axum::extract::Query<std::collections::HashMap<String, String>>,
    Signed { instance, auth, .. }: Signed<ByAccount>,
) -> AcmeResult {
    auth.require_post_as_get()?;
    let account = auth.account()?;
    if account.id != id {
        return Err(Error::unauthorized("an account can only list its own orders").into());
    }
    let page: i64 = match query.get("page") {
        None => 0,
        Some(p) => p.parse().ok().filter(|&p: &i64| p >= 0).ok_or_else(|| {
            Error::malformed(format!("page {p:?} is not a page number (0, 1, 2, ...)"))
        })?,
    };
    let offset = page
        .checked_mul(ORDERS_PAGE)
        .ok_or_else(|| Error::malformed(format!("page {page} is beyond the last page")))?;
    let ids = hub
        .store
        .order_ids_for_account(&account.id, ORDERS_PAGE + 1, offset)
        .await?;
    let more = ids.len() as i64 > ORDERS_PAGE;
    let urls: Vec<String> = ids
        .iter()
        .take(ORDERS_PAGE as usize)
        .map(|o| hub.acme_url(&instance.name, &format!("order/{o}")))
        .collect();
    let mut response = json_response(StatusCode::OK, &serde_json::json!({ "orders": urls }), None);
    if more {
        let next = hub.acme_url(
            &instance.name,
            &format!("account/{}/orders?page={}", account.id, page + 1),
        );
        link(&mut response, &next, "next");
    }
    Ok(response)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewOrderPayload {
    identifiers: Vec<IdentifierPayload>,
    not_before: Option<String>,
    not_after: Option<String>,
    replaces: Option<String>,
    profile: Option<String>,
}

#[derive(Deserialize)]
struct IdentifierPayload {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

fn parse_time(field: &str, value: Option<&str>) -> Result<Option<i64>, Error> {
    value
        .map(|v| {
            parse_rfc3339(v)
                .ok_or_else(|| Error::malformed(format!("{field} is not an RFC 3339 timestamp")))
        })
        .transpose()
}

pub async fn new_order(
    State(hub): State<Arc<Hub>>,
    Signed {
        instance,
        auth,
        client,
        ..
    }: Signed<ByAccount>,
) -> AcmeResult {
    let payload: NewOrderPayload = auth.jws.payload_json()?;
    let request = OrderRequest {
        identifiers: payload
            .identifiers
            .into_iter()
            .map(|i| (i.kind, i.value))
            .collect(),
        not_before: parse_time("notBefore", payload.not_before.as_deref())?,
        not_after: parse_time("notAfter", payload.not_after.as_deref())?,
        replaces: payload.replaces,
        profile: payload.profile,
    };
    let order = orders::new_order(&hub, &instance, auth.account()?, request, client).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &resources::order(&hub, &instance.name, &order),
        Some(resources::order_url(&hub, &instance.name, &order)),
    ))
}

pub async fn order(
    State(hub): State<Arc<Hub>>,
    Path((_, id)): Path<(String, String)>,
    Signed { instance, auth, .. }: Signed<ByAccount>,
) -> AcmeResult {
    auth.require_post_as_get()?;
    let account = auth.account()?;
    let order = hub
        .store
        .order(&instance.id, &id)
        .await?
        .filter(|o| o.account_id == account.id)
        .ok_or_else(|| Error::not_found("no such order for this account"))?;
    let mut response = json_response(
        StatusCode::OK,
        &resources::order(&hub, &instance.name, &order),
        None,
    );
    if order.status == crate::store::OrderStatus::Processing {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(response)
}

#[derive(Deserialize)]
struct FinalizePayload {
    csr: String,
}

pub async fn finalize(
    State(hub): State<Arc<Hub>>,
    Path((_, id)): Path<(String, String)>,
    Signed { instance, auth, .. }: Signed<ByAccount>,
) -> AcmeResult {
    let payload: FinalizePayload = auth.jws.payload_json()?;
    let csr = crate::jws::b64_decode(&payload.csr)
        .map_err(|_| Error::new(ErrorKind::BadCsr, "csr must be base64url-encoded DER"))?;
    let order = orders::finalize(&hub, &instance, auth.account()?, &id, &csr).await?;
    Ok(json_response(
        StatusCode::OK,
        &resources::order(&hub, &instance.name, &order),
        Some(resources::order_url(&hub, &instance.name, &order)),
    ))
}

pub async fn authorization(
    State(hub): State<Arc<Hub>>,
    Path((_, id)): Path<(String, String)>,
    Signed { instance, auth, .. }: Signed<ByAccount>,
) -> AcmeResult {
    let account = auth.account()?;
    if !auth.jws.is_post_as_get() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Deactivate {
            status: String,
        }
        let request: Deactivate = auth.jws.payload_json()?;
        if request.status != "deactivated" {
            return Err(Error::malformed(
                "an authorization's status can only be set to \"deactivated\"",
            )
            .into());
        }
        orders::deactivate_authorization(&hub, account, &id).await?;
    }
    let authz = hub
        .store
        .authorization(&instance.id, &id)
        .await?
        .filter(|a| a.account_id == account.id)
        .ok_or_else(|| Error::not_found("no such authorization for this account"))?;
    Ok(json_response(
        StatusCode::OK,
        &resources::authorization(&hub, &instance.name, &authz),
        None,
    ))
}

pub async fn challenge(
    State(hub): State<Arc<Hub>>,
    Path((_, id)): Path<(String, String)>,
    Signed { instance, auth, .. }: Signed<ByAccount>,
) -> AcmeResult {
    let account = auth.account()?;
    let mut shown = None;
    if !auth.jws.is_post_as_get() {
        // RFC 8555 §7.5.1: the client sends an empty object to say it is ready.
        let _: serde_json::Map<String, Value> = auth.jws.payload_json()?;
        shown = orders::respond_to_challenge(&hub, &instance, account, &id).await?;
    }
    let (challenge, authz) = match shown {
        Some(shown) => shown,
        None => orders::account_challenge(&hub, account, &id).await?,
    };
    let mut response = json_response(
        StatusCode::OK,
        &resources::challenge(&hub, &instance.name, &account.id, &challenge),
        None,
    );
    link(
        &mut response,
        &hub.acme_url(&instance.name, &format!("authz/{}", authz.id)),
        "up",
    );
    if challenge.status == crate::store::ChallengeStatus::Processing {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Ok(response)
}

/// RFC 8555 §7.4.2. `/cert/{id}` is leaf + intermediate; `/cert/{id}/1`
/// (the alternate) adds the root for clients that want the whole path.
pub async fn certificate(
    State(hub): State<Arc<Hub>>,
    Path(params): Path<Vec<(String, String)>>,
    Signed { instance, auth, .. }: Signed<ByAccount>,
) -> AcmeResult {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (id, alternate) = (param("id"), param("alt"));
    auth.require_post_as_get()?;
    let account = auth.account()?;
    let cert = hub
        .store
        .certificate_download(&instance.id, &id)
        .await?
        .filter(|c| c.account_id == account.id)
        .ok_or_else(|| Error::not_found("no such certificate for this account"))?;
    let Some(chain) = cert.chain_pem.clone() else {
        return Err(Error::not_found("the certificate is not issued yet").into());
    };
    // The local CA's one alternate is the chain with its root; a relayed
    // certificate's are the upstream CA's, unchanged.
    let alternates = match cert.issuer {
        CertificateIssuer::Local => vec![format!("{chain}{}", hub.ca.root_pem())],
        CertificateIssuer::CaAccount(_) => cert.alternate_chains.clone(),
    };
    let chain = match alternate.as_str() {
        "" => chain,
        n => n
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| alternates.get(i).cloned())
            .ok_or_else(|| Error::not_found("no such certificate chain"))?,
    };
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        chain,
    )
        .into_response();
    if alternate.is_empty() {
        for n in 1..=alternates.len() {
            link(
                &mut response,
                &hub.acme_url(&instance.name, &format!("cert/{id}/{n}")),
                "alternate",
            );
        }
    }
    Ok(response)
}

#[derive(Deserialize)]
struct RevokePayload {
    certificate: String,
    reason: Option<i64>,
}

pub async fn revoke_cert(
    State(hub): State<Arc<Hub>>,
    Signed { instance, auth, .. }: Signed<ByAccountOrKey>,
) -> AcmeResult {
    let payload: RevokePayload = auth.jws.payload_json()?;
    let der = crate::jws::b64_decode(&payload.certificate)?;
    let jwk = auth.key.to_jwk().to_string();
    let by = match &auth.account {
        Some(account) => Revoker::Account(account),
        None => Revoker::CertificateKey(&jwk),
    };
    orders::revoke(&hub, &instance, &der, payload.reason, by).await?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyChangePayload {
    account: String,
    old_key: Value,
}

/// RFC 8555 §7.3.5: the outer JWS is signed by the old key (kid), the inner
/// one by the new key (jwk) over `{account, oldKey}`.
pub async fn key_change(
    State(hub): State<Arc<Hub>>,
    Signed { instance, auth, .. }: Signed<ByAccount>,
) -> AcmeResult {
    let account = auth.account()?;
    let inner = Jws::parse(&auth.jws.payload)?;
    let KeyRef::Jwk(new_key) = &inner.key else {
        return Err(
            Error::malformed("the inner keyChange JWS must carry the new key as jwk").into(),
        );
    };
    if inner.nonce.is_some() {
        return Err(Error::malformed("the inner keyChange JWS must not have a nonce").into());
    }
    if inner.url != auth.jws.url {
        return Err(
            Error::malformed("the inner keyChange JWS url must equal the outer one").into(),
        );
    }
    inner.verify(new_key)?;
    let payload: KeyChangePayload = inner.payload_json()?;
    if payload.account != hub.account_url(&instance.name, &account.id) {
        return Err(
            Error::unauthorized("the inner keyChange payload names another account").into(),
        );
    }
    if AccountKey::from_jwk(&payload.old_key)?.thumbprint() != account.key_thumbprint {
        return Err(Error::unauthorized("oldKey is not the account's current key").into());
    }
    if let Some(holder) = hub
        .store
        .account_by_thumbprint(&instance.id, &new_key.thumbprint())
        .await?
    {
        let mut response = AcmeError(Error::new(
            ErrorKind::Conflict,
            "the new key is already in use by an account",
        ))
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&hub.account_url(&instance.name, &holder.id)) {
            response.headers_mut().insert(header::LOCATION, v);
        }
        return Ok(response);
    }
    orders::change_key(&hub, account, new_key).await?;
    let account = hub
        .store
        .account(&instance.id, &account.id)
        .await?
        .ok_or_else(|| Error::internal("reading the account", "vanished"))?;
    Ok(json_response(
        StatusCode::OK,
        &resources::account(&hub, &instance.name, &account),
        None,
    ))
}

/// RFC 9773 §4.2: the suggested renewal window, fetched with a plain GET.
pub async fn renewal_info(
    State(hub): State<Arc<Hub>>,
    Path((instance, id)): Path<(String, String)>,
) -> AcmeResult {
    let instance = hub.instance(&instance).await?;
    let window = orders::renewal_info(&hub, &instance, &id).await?;
    let value = serde_json::json!({
        "suggestedWindow": { "start": rfc3339(window.start), "end": rfc3339(window.end) }
    });
    let mut response = json_response(StatusCode::OK, &value, None);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(window.retry_after));
    Ok(response)
}

/// The local CA's CRL (RFC 5280), DER.
pub async fn crl(State(hub): State<Arc<Hub>>) -> AcmeResult {
    let der = orders::current_crl(&hub).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/pkix-crl")],
        der,
    )
        .into_response())
}

/// The local CA's root, for clients to trust.
pub async fn root(State(hub): State<Arc<Hub>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        hub.ca.root_pem().to_string(),
    )
        .into_response()
}
