//! Console sessions: sign-in with a token or a console user's password, a
//! `Secure; HttpOnly; SameSite=Strict` cookie whose secret is stored only
//! as a hash, and the form token (CSRF) every post must carry.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Ctx, Form, UiError, UiResult, render, see_other};
use crate::hub::Hub;
use crate::secrets::password;
use crate::secrets::token_hash;
use crate::store::{UiSession, UiUser};
use crate::tenancy::principals::{
    Principal, Role, Scope, bootstrap, identify, principal_for_token, principal_for_user,
};
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

/// The one answer to every refused password sign-in: an unknown name, a
/// wrong password and a locked-out address read the same, so that the page
/// tells no one which names exist or are being guessed.
fn refused_password() -> String {
    format!(
        "Wrong user name or password, or too many failed sign-ins from this address (then wait \
         {} minutes before trying again).",
        crate::policy::sign_in::LOCK_SECS / 60
    )
}

/// Whether a password sign-in succeeds. The password is checked every time
/// (against the user's hash, or a decoy when there is no such user), locked
/// out or not, so that the time taken tells nothing either.
async fn password_accepted(user: Option<&UiUser>, locked: bool, password: &str) -> bool {
    let matched =
        password::verify(password.to_string(), user.map(|u| u.password_hash.clone())).await;
    matched && !locked && user.is_some()
}

/// Checks a user's password; `Err` is the page to answer with. Failures are
/// counted per (name, client address), known name or not: a stranger
/// guessing locks out only their own address.
async fn password_sign_in(
    hub: &Hub,
    name: &str,
    password: &str,
    client: IpAddr,
) -> UiResult<Result<(Principal, String), Response>> {
    let user = hub.store.ui_user(name).await?.filter(|u| u.name == name);
    let at = now();
    let failures = &hub.sign_in_failures;
    let locked = failures.locked(name, client, at);
    if password_accepted(user.as_ref(), locked, password).await {
        if let Some(u) = user {
            failures.succeeded(name, client);
            return Ok(Ok((principal_for_user(&u)?, format!("user:{}", u.id))));
        }
    }
    let why = match (&user, locked) {
        (_, true) => "locked out",
        (Some(_), false) => "wrong password",
        (None, false) => "unknown user",
    };
    if !locked {
        if let Some(until) = failures.failed(name, client, at) {
            if let Some(u) = &user {
                // Recorded for admins without holding up the answer: a known
                // name's refusal must take no longer than an unknown one's.
                let (store, id) = (hub.store.clone(), u.id.clone());
                tokio::spawn(async move {
                    if let Err(e) = store.note_sign_in_lock(&id, until).await {
                        tracing::warn!(event = "ui.sign_in_lock_unrecorded", error = %e,
                            "a console sign-in lock was not recorded");
                    }
                });
            }
            tracing::warn!(event = "ui.sign_in_lock", %client, known = user.is_some(),
                "console sign-ins locked for one address after repeated failures");
        }
    }
    // The name is logged only when it exists: an unknown one may be a
    // password typed into the wrong field.
    tracing::info!(event = "ui.sign_in_refused", user = user.as_ref().map(|u| u.name.as_str()),
        %client, why, "console sign-in refused");
    Ok(Err(refused_sign_in(&refused_password())))
}

/// The address a sign-in comes from: the connection's peer, or what a
/// trusted proxy says.
fn client_of(hub: &Hub, parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<crate::policy::ClientAddr>()
        .map_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), |c| {
            crate::policy::client_ip(&hub.config.trusted_proxies, c.0.ip(), &parts.headers)
        })
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
        let client = client_of(&hub, &parts);
        match password_sign_in(&hub, name, form.get("password"), client).await? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// Each call checks one password (under nextest, each test is its own
    /// process, so the count is this test's).
    async fn checks_during(f: impl std::future::Future<Output = bool>) -> (bool, u64) {
        let before = password::CHECKS.load(Ordering::SeqCst);
        let accepted = f.await;
        (accepted, password::CHECKS.load(Ordering::SeqCst) - before)
    }

    #[tokio::test]
    async fn every_password_sign_in_checks_a_password_hash() {
        let right = "correct horse battery staple";
        let user = UiUser {
            id: "u1".into(),
            name: "alice".into(),
            password_hash: password::hash(right.into()).await.unwrap(),
            scope: "admin".into(),
            role: "read".into(),
            created_by: "test".into(),
            created_at: 0,
            failed_logins: 0,
            locked_until: 0,
        };
        // Unknown user, wrong password, locked out: refused, after one
        // hash check each, as long as a good sign-in takes.
        for (who, locked, pw, what) in [
            (None, false, right, "unknown user"),
            (Some(&user), false, "wrong", "wrong password"),
            (Some(&user), true, right, "locked out"),
        ] {
            let (accepted, checks) = checks_during(password_accepted(who, locked, pw)).await;
            assert!(!accepted, "{what}");
            assert_eq!(checks, 1, "{what}: one password check");
        }
        let (accepted, checks) = checks_during(password_accepted(Some(&user), false, right)).await;
        assert!(accepted);
        assert_eq!(checks, 1);
    }

    #[test]
    fn the_refusal_does_not_say_which_part_was_wrong() {
        let text = refused_password();
        assert!(text.starts_with("Wrong user name or password"), "{text}");
        assert!(
            text.contains("15 minutes") && !text.contains("locked"),
            "{text}"
        );
    }
}
