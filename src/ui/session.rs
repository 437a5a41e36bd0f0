//! Console sessions: sign-in with a token, a `Secure; HttpOnly;
//! SameSite=Strict` cookie whose secret is stored only as a hash, and the
//! form token (CSRF) every post must carry.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Ctx, Form, UiError, UiResult, render, see_other};
use crate::admin::auth::{Principal, Role, Scope, principal_for, principal_for_hash, token_hash};
use crate::hub::Hub;
use crate::store::UiSession;
use crate::util::{b64, now, random_bytes};

/// The session cookie.
const COOKIE: &str = "acmehub_session";
/// The sign-in form's own token, before there is a session.
const LOGIN_COOKIE: &str = "acmehub_login";
/// A session lasts a working day; signing in again starts a new one.
const SESSION_SECS: i64 = 12 * 3600;
/// Largest form the console accepts (a CA's PEM roots fit).
const MAX_FORM: usize = 256 * 1024;

/// A signed-in operator.
#[derive(Debug, Clone)]
pub struct Session {
    pub who: Principal,
    csrf: String,
    id_hash: String,
}

impl Session {
    /// The frame of a page about `instance` (or none), in menu `section`.
    pub fn ctx(&self, instance: Option<&str>, section: &'static str) -> Ctx {
        Ctx {
            user: self.who.name.clone(),
            role: match self.who.role {
                Role::Read => "read",
                Role::Write => "write",
            },
            admin: self.who.scope == Scope::Admin,
            writer: self.who.role == Role::Write,
            csrf: self.csrf.clone(),
            instance: instance.map(str::to_string),
            section,
            notice: None,
            error: None,
        }
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    let text =
        format!("{name}={value}; Path=/ui; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict");
    // Names and values are ours: base64url and fixed ASCII.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Equal, compared as digests: timing tells nothing about how much of a
/// secret matched.
fn same(a: &str, b: &str) -> bool {
    token_hash(a) == token_hash(b)
}

fn secret() -> String {
    b64(&random_bytes::<32>())
}

impl FromRequestParts<Arc<Hub>> for Session {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> UiResult<Self> {
        let secret = cookie(&parts.headers, COOKIE).ok_or(UiError::SignIn)?;
        let id_hash = token_hash(&secret);
        let stored = hub
            .store
            .ui_session(&id_hash, now())
            .await?
            .ok_or(UiError::SignIn)?;
        // The token is checked on every request: revoking it ends its sessions.
        let who = principal_for_hash(hub, &stored.token_hash).await?;
        Ok(Self {
            who,
            csrf: stored.csrf,
            id_hash,
        })
    }
}

/// A form post: a session, the form, and a form token that matched. Only a
/// token that may write gets this far; a read-only token's posts are
/// refused here, whichever page they came from.
pub struct Post {
    pub session: Session,
    pub form: Form,
}

impl Post {
    pub fn who(&self) -> Principal {
        self.session.who.clone()
    }
}

async fn read_form(request: Request) -> UiResult<(Parts, Form)> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| UiError::Refused("the form is too large".into()))?;
    let form =
        Form::parse(&bytes).map_err(|_| UiError::Refused("the form could not be read".into()))?;
    Ok((parts, form))
}

fn check_csrf(session: &Session, form: &Form) -> UiResult<()> {
    if same(form.get("csrf"), &session.csrf) {
        Ok(())
    } else {
        Err(UiError::Refused(
            "this form has no valid form token (it is stale, or was not sent from this console); reload the page and try again".into(),
        ))
    }
}

impl FromRequest<Arc<Hub>> for Post {
    type Rejection = UiError;

    async fn from_request(request: Request, hub: &Arc<Hub>) -> UiResult<Self> {
        let (mut parts, form) = read_form(request).await?;
        let session = Session::from_request_parts(&mut parts, hub).await?;
        check_csrf(&session, &form)?;
        session
            .who
            .require_write()
            .map_err(|e| UiError::Refused(e.detail))?;
        Ok(Self { session, form })
    }
}

#[derive(askama::Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    csrf: String,
    error: Option<String>,
}

fn login_form(error: Option<String>, status: StatusCode) -> Response {
    let csrf = secret();
    let mut response = (
        status,
        render(&LoginPage {
            csrf: csrf.clone(),
            error,
        }),
    )
        .into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &csrf, 600));
    response
}

pub async fn login_page() -> Response {
    login_form(None, StatusCode::OK)
}

/// Signs in with a token: the form's token must match the sign-in cookie
/// (so another site cannot sign a browser in as someone else).
pub async fn login(State(hub): State<Arc<Hub>>, request: Request) -> UiResult<Response> {
    let (parts, form) = read_form(request).await?;
    let expected = cookie(&parts.headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same(form.get("csrf"), &expected) {
        return Ok(login_form(
            Some("The sign-in form expired; please sign in again.".into()),
            StatusCode::FORBIDDEN,
        ));
    }
    let token = form.get("token").trim();
    let who = match principal_for(&hub, token).await {
        Ok(who) if !token.is_empty() => who,
        Ok(_) | Err(crate::admin::ApiError::Unauthenticated) => {
            tracing::info!("console sign-in refused: unknown token");
            return Ok(login_form(
                Some("That token is not valid (unknown or revoked).".into()),
                StatusCode::UNAUTHORIZED,
            ));
        }
        Err(crate::admin::ApiError::Hub(e)) => return Err(UiError::Hub(e)),
    };
    let secret = secret();
    let at = now();
    hub.store
        .insert_ui_session(&UiSession {
            id_hash: token_hash(&secret),
            token_hash: token_hash(token),
            csrf: crate::util::b64(&random_bytes::<24>()),
            created_at: at,
            expires_at: at + SESSION_SECS,
        })
        .await?;
    tracing::info!(token = %who.name, "console sign-in");
    let home = match &who.scope {
        Scope::Admin => "/ui/instances".to_string(),
        Scope::Instance(id) => match hub.store.instance_by_ref(id).await? {
            Some(i) => format!("/ui/i/{}", i.name),
            None => "/ui/instances".to_string(),
        },
    };
    let mut response = see_other(&home);
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(COOKIE, &secret, SESSION_SECS),
    );
    headers.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0));
    Ok(response)
}

/// Signs out: the session ends on the server, not only in this browser.
pub async fn logout(State(hub): State<Arc<Hub>>, request: Request) -> UiResult<Response> {
    let (mut parts, form) = read_form(request).await?;
    let session = Session::from_request_parts(&mut parts, &hub).await?;
    check_csrf(&session, &form)?;
    hub.store.delete_ui_session(&session.id_hash).await?;
    let mut response = see_other("/ui/login");
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(COOKIE, "", 0));
    Ok(response)
}
