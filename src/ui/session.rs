//! Console sessions: sign-in with a token or a console user's password, a
//! `Secure; HttpOnly; SameSite=Strict` cookie whose secret is stored only
//! as a hash, and the form token (CSRF) every post must carry.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Ctx, Form, UiError, UiResult, render, see_other};
use crate::admin::auth::{
    Principal, Role, Scope, bootstrap, identify, principal_for_token, principal_for_user,
    token_hash,
};
use crate::hub::Hub;
use crate::secrets::password;
use crate::store::UiSession;
use crate::util::{b64, now, random_bytes};

/// The session cookie. `__Host-`: the browser takes it only from this
/// host, over HTTPS, for path `/`, so a sibling domain cannot plant one.
const COOKIE: &str = "__Host-acmehub_session";
/// The sign-in form's own token, before there is a session.
const LOGIN_COOKIE: &str = "__Host-acmehub_login";
/// A session lasts a working day at most...
const SESSION_SECS: i64 = 12 * 3600;
/// ...and ends after an hour without a request.
const IDLE_SECS: i64 = 3600;
/// The idle deadline moves at most this often (one write a minute).
const TOUCH_SECS: i64 = 60;
/// Largest form the console accepts (a CA's PEM roots fit).
const MAX_FORM: usize = 256 * 1024;
/// Largest sign-in form.
const MAX_LOGIN_FORM: usize = 8 * 1024;

/// The largest body a console path takes (`None` outside the console): the
/// listener holds posts to it, so that every route answers an oversized
/// body the same way.
pub fn form_limit(path: &str) -> Option<usize> {
    match path {
        "/ui/login" => Some(MAX_LOGIN_FORM),
        _ if path == "/ui" || path.starts_with("/ui/") => Some(MAX_FORM),
        _ => None,
    }
}

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

/// A cookie's value; none when the request carries it more than once
/// (one of them was planted).
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string());
    let value = values.next()?;
    (values.next().is_none() && !value.is_empty()).then_some(value)
}

fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    let text =
        format!("{name}={value}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict");
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
        let at = now();
        let stored = hub
            .store
            .ui_session(&id_hash, at)
            .await?
            .ok_or(UiError::SignIn)?;
        let who = subject_principal(hub, &stored.subject).await?;
        let idle_deadline = (at + IDLE_SECS).min(stored.created_at + SESSION_SECS);
        if idle_deadline - stored.expires_at >= TOUCH_SECS {
            hub.store.touch_ui_session(&id_hash, idle_deadline).await?;
        }
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

async fn read_form(body: axum::body::Body, limit: usize) -> UiResult<Form> {
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| UiError::Refused("the form is too large".into()))?;
    Form::parse(&bytes).map_err(|_| UiError::Refused("the form could not be read".into()))
}

/// The session of a post, checked before its body is read (so that no one
/// without a session makes the hub buffer a form), and the form.
async fn session_form(request: Request, hub: &Arc<Hub>) -> UiResult<(Session, Form)> {
    let (mut parts, body) = request.into_parts();
    let session = Session::from_request_parts(&mut parts, hub).await?;
    let form = read_form(body, MAX_FORM).await?;
    check_csrf(&session, &form)?;
    Ok((session, form))
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
        let (session, form) = session_form(request, hub).await?;
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

/// Failed password sign-ins in a row that lock a user...
const LOGIN_FAILURES: i64 = 5;
/// ...for this long.
const LOCK_SECS: i64 = 15 * 60;

/// Who a session's `subject` stands for now: the token must still be valid
/// and the user must still exist, so revoking or deleting ends the session.
async fn subject_principal(hub: &Hub, subject: &str) -> UiResult<Principal> {
    if subject == "bootstrap" {
        return Ok(bootstrap());
    }
    if let Some(id) = subject.strip_prefix("token:") {
        let token = hub
            .store
            .token(id)
            .await?
            .filter(|t| t.id == id && t.revoked_at.is_none())
            .ok_or(UiError::SignIn)?;
        return Ok(principal_for_token(&token)?);
    }
    let id = subject.strip_prefix("user:").ok_or(UiError::SignIn)?;
    let user = hub
        .store
        .ui_user(id)
        .await?
        .filter(|u| u.id == id)
        .ok_or(UiError::SignIn)?;
    Ok(principal_for_user(&user)?)
}

/// The session subject of a token (`bootstrap` or `token:<id>`): the
/// database keeps which token, never a digest of its secret.
async fn token_subject(hub: &Hub, token: &str) -> UiResult<Option<(Principal, String)>> {
    Ok(identify(hub, token).await?.map(|(who, id)| {
        let subject = id.map_or_else(|| "bootstrap".to_string(), |id| format!("token:{id}"));
        (who, subject)
    }))
}

/// Where a principal lands: the instance list, or an instance token's own
/// instance.
pub(super) async fn home_of(hub: &Hub, who: &Principal) -> UiResult<String> {
    Ok(match &who.scope {
        Scope::Admin => "/ui/instances".to_string(),
        Scope::Instance(id) => match hub.store.instance_by_ref(id).await? {
            Some(i) => format!("/ui/i/{}", i.name),
            None => "/ui/instances".to_string(),
        },
    })
}

/// A refused sign-in: the same words whatever was wrong, so the page does
/// not tell which user names exist.
fn refused_sign_in(why: &str) -> Response {
    login_form(Some(why.into()), StatusCode::UNAUTHORIZED)
}

/// Checks a user's password; `Err` is the page to answer with.
async fn password_sign_in(
    hub: &Hub,
    name: &str,
    password: &str,
) -> UiResult<Result<(Principal, String), Response>> {
    let user = hub.store.ui_user(name).await?.filter(|u| u.name == name);
    let at = now();
    if let Some(u) = &user {
        if u.locked_until > at {
            tracing::info!(user = %u.name, "console sign-in refused: user locked");
            return Ok(Err(refused_sign_in(
                "Too many failed sign-ins: this user is locked for a while. Try again later.",
            )));
        }
    }
    let matched = password::verify(
        password.to_string(),
        user.as_ref().map(|u| u.password_hash.clone()),
    )
    .await;
    match user {
        Some(u) if matched => {
            hub.store.note_good_login(&u.id).await?;
            Ok(Ok((principal_for_user(&u)?, format!("user:{}", u.id))))
        }
        Some(u) => {
            hub.store
                .note_failed_login(&u.id, LOGIN_FAILURES, at + LOCK_SECS)
                .await?;
            tracing::info!(user = %u.name, "console sign-in refused: wrong password");
            Ok(Err(refused_sign_in("Wrong user name or password.")))
        }
        None => {
            tracing::info!("console sign-in refused: unknown user");
            Ok(Err(refused_sign_in("Wrong user name or password.")))
        }
    }
}

/// Signs in with a token, or a console user's name and password. The form's
/// token must match the sign-in cookie (so another site cannot sign a
/// browser in as someone else).
pub async fn login(State(hub): State<Arc<Hub>>, request: Request) -> UiResult<Response> {
    let (parts, body) = request.into_parts();
    let form = read_form(body, MAX_LOGIN_FORM).await?;
    let expected = cookie(&parts.headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same(form.get("csrf"), &expected) {
        return Ok(login_form(
            Some("The sign-in form expired; please sign in again.".into()),
            StatusCode::FORBIDDEN,
        ));
    }
    let name = form.get("user").trim();
    let (who, subject) = if name.is_empty() {
        match token_subject(&hub, form.get("token").trim()).await? {
            Some(signed_in) => signed_in,
            None => {
                tracing::info!("console sign-in refused: unknown token");
                return Ok(refused_sign_in(
                    "That token is not valid (unknown or revoked).",
                ));
            }
        }
    } else {
        match password_sign_in(&hub, name, form.get("password")).await? {
            Ok(signed_in) => signed_in,
            Err(page) => return Ok(page),
        }
    };
    let secret = secret();
    let at = now();
    hub.store
        .insert_ui_session(&UiSession {
            id_hash: token_hash(&secret),
            subject,
            csrf: b64(&random_bytes::<24>()),
            created_at: at,
            expires_at: at + IDLE_SECS,
        })
        .await?;
    tracing::info!(who = %who.actor().label(), "console sign-in");
    let mut response = see_other(&home_of(&hub, &who).await?);
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
    let (session, _) = session_form(request, &hub).await?;
    hub.store.delete_ui_session(&session.id_hash).await?;
    let mut response = see_other("/ui/login");
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(COOKIE, "", 0));
    Ok(response)
}
