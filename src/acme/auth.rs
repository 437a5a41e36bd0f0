//! Authenticating ACME POST requests (RFC 8555 §6.2–6.5): media type, JWS
//! shape, `url`, key (`jwk` or `kid`), signature and nonce, in that order.

use axum::http::HeaderMap;

use crate::error::{Error, ErrorKind};
use crate::hub::Hub;
use crate::jws::{AccountKey, Jws, KeyRef};
use crate::orders::limits::Subject;
use crate::policy::Limit;
use crate::store::{Account, AccountStatus, Instance};

/// Which key form a resource accepts (RFC 8555 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    /// Only `jwk` (newAccount).
    Jwk,
    /// Only `kid` (everything else).
    Kid,
    /// Either (revokeCert: the account, or the certificate's key).
    Either,
}

/// A request whose JWS verified.
pub struct Authenticated {
    pub jws: Jws,
    /// The account, for `kid` requests.
    pub account: Option<Account>,
    /// The key that signed.
    pub key: AccountKey,
}

impl Authenticated {
    /// The account of a `kid` request (always present for [`KeyMode::Kid`]).
    pub fn account(&self) -> Result<&Account, Error> {
        self.account.as_ref().ok_or_else(|| {
            Error::malformed("this request must be signed with an account key (kid)")
        })
    }

    /// The payload must be empty: POST-as-GET (RFC 8555 §6.3).
    pub fn require_post_as_get(&self) -> Result<(), Error> {
        if self.jws.is_post_as_get() {
            Ok(())
        } else {
            Err(Error::malformed(
                "this resource is fetched with POST-as-GET: the payload must be empty",
            ))
        }
    }
}

fn is_jose_json(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/jose+json"))
}

/// Checks everything RFC 8555 §6 asks of a POST before a handler acts on it.
pub async fn authenticate(
    hub: &Hub,
    instance: &Instance,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
    mode: KeyMode,
) -> Result<Authenticated, Error> {
    if !is_jose_json(headers) {
        return Err(Error::new(
            ErrorKind::UnsupportedMediaType,
            "ACME requests must have Content-Type: application/jose+json",
        ));
    }
    let jws = Jws::parse(body)?;
    let expected_url = format!("{}{path}", hub.config.public_url);
    if jws.url != expected_url {
        return Err(Error::unauthorized(format!(
            "the JWS url header {:?} does not match the request URL {expected_url:?}",
            jws.url
        )));
    }
    let (account, key) = match (&jws.key, mode) {
        (KeyRef::Kid(_), KeyMode::Jwk) => {
            return Err(Error::malformed(
                "this resource must be signed with a jwk header, not a kid",
            ));
        }
        (KeyRef::Jwk(_), KeyMode::Kid) => {
            return Err(Error::malformed(
                "this resource must be signed with a kid header (the account URL), not a jwk",
            ));
        }
        (KeyRef::Jwk(key), _) => (None, key.clone()),
        (KeyRef::Kid(kid), _) => {
            let account = account_for_kid(hub, instance, kid).await?;
            let jwk: serde_json::Value = serde_json::from_str(&account.jwk)
                .map_err(|e| Error::internal("loading the account key", e))?;
            let key = AccountKey::from_stored_jwk(&jwk)?;
            (Some(account), key)
        }
    };
    jws.verify(&key)?;
    let nonce = jws.nonce.as_deref().ok_or_else(|| {
        Error::new(
            ErrorKind::BadNonce,
            "the JWS has no nonce; get one from newNonce",
        )
    })?;
    hub.nonces.redeem(nonce).await?;
    Ok(Authenticated { jws, account, key })
}

async fn account_for_kid(hub: &Hub, instance: &Instance, kid: &str) -> Result<Account, Error> {
    let prefix = hub.acme_url(&instance.name, "account/");
    let missing = || {
        Error::new(
            ErrorKind::AccountDoesNotExist,
            format!("no account {kid:?} exists at this instance"),
        )
    };
    let id = kid
        .strip_prefix(&prefix)
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .ok_or_else(missing)?;
    let account = hub
        .store
        .account(&instance.id, id)
        .await?
        .ok_or_else(missing)?;
    if account.status != AccountStatus::Valid {
        return Err(Error::unauthorized(format!(
            "the account is {}",
            account.status.as_str()
        )));
    }
    Ok(account)
}

/// The instance's requests-per-second limit, for one subject.
async fn charge_requests(
    hub: &Hub,
    instance: &Instance,
    subject: Subject<'_>,
) -> Result<(), Error> {
    crate::orders::limits::charge(hub, instance, Limit::Requests, &[subject]).await
}

/// Which key form a resource accepts, as a type, for the [`Signed`] extractor.
pub trait Mode {
    const MODE: KeyMode;
}

/// Resources signed by an account (`kid`).
pub struct ByAccount;
/// newAccount: signed by the key being registered (`jwk`).
pub struct ByNewKey;
/// revokeCert: an account, or the certificate's own key.
pub struct ByAccountOrKey;

impl Mode for ByAccount {
    const MODE: KeyMode = KeyMode::Kid;
}
impl Mode for ByNewKey {
    const MODE: KeyMode = KeyMode::Jwk;
}
impl Mode for ByAccountOrKey {
    const MODE: KeyMode = KeyMode::Either;
}

/// An authenticated ACME POST to `/acme/{instance}/...`: the extractor runs
/// every check of [`authenticate`] before a handler sees the request.
pub struct Signed<M> {
    pub instance: Instance,
    pub auth: Authenticated,
    /// The client's address, when the listener recorded it.
    pub client: Option<std::net::IpAddr>,
    mode: std::marker::PhantomData<M>,
}

impl<M: Mode + Send> axum::extract::FromRequest<std::sync::Arc<Hub>> for Signed<M> {
    type Rejection = super::AcmeError;

    async fn from_request(
        request: axum::extract::Request,
        hub: &std::sync::Arc<Hub>,
    ) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        // RFC 8555 §6.4: the JWS "url" is the whole request URL, query
        // string included (the order list's `next` links carry `?page=`).
        let path = request
            .uri()
            .path_and_query()
            .map_or_else(|| request.uri().path(), |pq| pq.as_str())
            .to_string();
        let name = request
            .uri()
            .path()
            .strip_prefix("/acme/")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default()
            .to_string();
        let instance = hub.instance(&name).await?;
        let client = request
            .extensions()
            .get::<crate::policy::ClientAddr>()
            .map(|c| {
                crate::policy::client_ip(&hub.config.trusted_proxies, c.0.ip(), request.headers())
            });
        if let Some(ip) = client {
            charge_requests(hub, &instance, Subject::Ip(ip)).await?;
        }
        let limit = hub.config.acme.max_body_bytes;
        let body = axum::body::Bytes::from_request(request, &())
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    Error::new(
                        ErrorKind::PayloadTooLarge,
                        format!("the request body exceeds {limit} bytes"),
                    )
                } else {
                    Error::malformed("cannot read the request body")
                }
            })?;
        let auth = authenticate(hub, &instance, &headers, &path, &body, M::MODE).await?;
        if let Some(account) = &auth.account {
            charge_requests(hub, &instance, Subject::Account(&account.id)).await?;
        }
        Ok(Self {
            instance,
            auth,
            client,
            mode: std::marker::PhantomData,
        })
    }
}
