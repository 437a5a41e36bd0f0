//! The console's pages. Each handler calls the admin API's handler for the
//! same thing (so a page checks exactly what the API checks) and draws the
//! answer; a refused form is drawn again with the API's error and what was
//! typed, secrets left out: every post that does so ends in [`answer`].

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::form::Field::{self, *};
use super::{Ctx, Form, Post, Session, UiResult, Values, render, see_other};
use crate::admin::views::ManagedView;
use crate::admin::views::{
    AccessKeyView, CaAccountView, CaTestView, CertificateView, CredentialView, DelegationView,
    EventView, InstanceView, KindView, NewAccessKeyView, OrderView, ZoneTestView, ZoneView,
};
use crate::admin::{ApiError, ApiJson, Created, Page, dns, handlers, inventory, managed, relay};
use crate::error::Error;
use crate::hub::Hub;
use crate::issuance::upstream::{KNOWN_CAS, KnownCa};
use crate::store::{Environment, Issuer, KeyType};

type Hub_ = State<Arc<Hub>>;

/// `?done=` after a post: which notice the page shows. Fixed texts, so a
/// link cannot make the console say anything else.
#[derive(Debug, Default, Deserialize)]
pub struct Done {
    done: Option<String>,
}

impl Done {
    fn notice(&self) -> Option<String> {
        let text = match self.done.as_deref()? {
            "created" => "Created.",
            "saved" => "Saved.",
            "deleted" => "Deleted.",
            "revoked" => "Revoked.",
            "rotated" => "Saved; the secret was replaced.",
            "checked" => "Checked again.",
            "renewing" => "Renewal started: a new order is under way.",
            _ => return None,
        };
        Some(text.to_string())
    }
}

fn with_notice(mut ctx: Ctx, done: &Done) -> Ctx {
    ctx.notice = done.notice();
    ctx
}

/// How a post ends. When the API took it, `then` answers: a redirect with
/// [`go`] for most, a page for those that show something only once. When the
/// API refused it, `redraw` draws the page the form was on again, in `ctx`
/// (that page's frame) with the API's words.
async fn answer<T, Then, Redraw>(
    result: Result<T, ApiError>,
    then: impl FnOnce(T) -> Then,
    mut ctx: Ctx,
    redraw: impl FnOnce(Ctx) -> Redraw,
) -> UiResult<Response>
where
    Then: Future<Output = UiResult<Response>>,
    Redraw: Future<Output = UiResult<Response>>,
{
    match result {
        Ok(done) => then(done).await,
        Err(e) => {
            ctx.error = Some(match e {
                ApiError::Unauthenticated => "the session ended; sign in again".to_string(),
                ApiError::Hub(e) => e.detail,
            });
            redraw(ctx).await
        }
    }
}

/// Calls an API handler with the settings a form became; a form that did
/// not become them is refused as the API would have refused it.
async fn with_settings<S, T, F>(
    settings: Result<S, Error>,
    call: impl FnOnce(ApiJson<S>) -> F,
) -> Result<T, ApiError>
where
    F: Future<Output = Result<T, ApiError>>,
{
    call(ApiJson(settings?)).await
}

/// A post the API took: on to `to` (303, so a reload does not post again),
/// whose `?done=` names the notice.
fn go(to: String) -> std::future::Ready<UiResult<Response>> {
    std::future::ready(Ok(see_other(&to)))
}

#[derive(Template)]
#[template(path = "ui/error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub message: String,
}

pub async fn home(session: Session, State(hub): Hub_) -> UiResult<Response> {
    Ok(see_other(
        &super::session::home_of(&hub, &session.who).await?,
    ))
}

// ---- instances ----

#[derive(Template)]
#[template(path = "ui/instances.html")]
struct InstancesPage {
    ctx: Ctx,
    instances: Vec<InstanceView>,
    v: Values,
}

async fn instances_page(
    hub: Arc<Hub>,
    session: &Session,
    ctx: Ctx,
    v: Values,
) -> UiResult<Response> {
    let instances = handlers::list_instances(State(hub), session.who.clone())
        .await?
        .0;
    Ok(render(&InstancesPage { ctx, instances, v }))
}

pub async fn instances(
    session: Session,
    State(hub): Hub_,
    Query(done): Query<Done>,
) -> UiResult<Response> {
    let ctx = with_notice(session.ctx(None, "instances"), &done);
    let v = Values::default().or(&[
        ("issuer", Issuer::Local.as_str()),
        ("environment", Environment::Production.as_str()),
    ]);
    instances_page(hub, &session, ctx, v).await
}

const INSTANCE_NEW: &[(&str, Field)] = &[
    ("name", Text),
    ("description", Text),
    ("issuer", Keep),
    ("environment", Keep),
    ("external_account_required", Check),
];

pub async fn create_instance(State(hub): Hub_, post: Post) -> UiResult<Response> {
    let made = with_settings(post.form.read(INSTANCE_NEW), |s| {
        handlers::create_instance(State(hub.clone()), post.who(), s)
    })
    .await;
    answer(
        made,
        |Created(i)| go(format!("/ui/i/{}?done=created", i.name)),
        post.session.ctx(None, "instances"),
        |ctx| instances_page(hub, &post.session, ctx, Values::posted(&post.form)),
    )
    .await
}

#[derive(Template)]
#[template(path = "ui/instance.html")]
struct InstancePage {
    ctx: Ctx,
    instance: InstanceView,
    accounts: Vec<CaAccountView>,
    v: Values,
    /// The hub's `[validation] allow_private_targets`.
    private_default: bool,
}

async fn instance_page(
    hub: Arc<Hub>,
    session: &Session,
    i: &str,
    mut ctx: Ctx,
    posted: Option<Values>,
) -> UiResult<Response> {
    let who = session.who.clone();
    let instance = handlers::show_instance(State(hub.clone()), who.clone(), Path(i.into()))
        .await?
        .0;
    let accounts = relay::list_ca_accounts(State(hub.clone()), who, Path(i.into()))
        .await?
        .0;
    let preferred = accounts
        .iter()
        .find(|a| a.preferred)
        .map(|a| a.id.clone())
        .unwrap_or_default();
    // `Values::of` leaves out a false flag; the select needs to tell it
    // from null (the hub default).
    let private_targets = match instance.allow_private_targets {
        Some(false) => "off",
        _ => "",
    };
    let v = posted.unwrap_or_else(|| {
        Values::of(&instance).or(&[
            ("preferred", &preferred),
            ("allow_private_targets", private_targets),
        ])
    });
    ctx.instance = Some(instance.name.clone());
    Ok(render(&InstancePage {
        ctx,
        instance,
        accounts,
        v,
        private_default: hub.config.validation.allow_private_targets,
    }))
}

pub async fn instance(
    session: Session,
    State(hub): Hub_,
    Path(i): Path<String>,
    Query(done): Query<Done>,
) -> UiResult<Response> {
    let ctx = with_notice(session.ctx(Some(&i), "settings"), &done);
    instance_page(hub, &session, &i, ctx, None).await
}

const INSTANCE_SETTINGS: &[(&str, Field)] = &[
    ("description", Text),
    ("issuer", Keep),
    ("environment", Keep),
    ("external_account_required", Check),
    ("failover", Check),
    ("cert_validity_days", NumberOrNull),
    ("allowed_challenges", Many),
    ("allow_private_targets", BoolOrNull),
];

pub async fn update_instance(
    State(hub): Hub_,
    Path(i): Path<String>,
    post: Post,
) -> UiResult<Response> {
    answer(
        save_instance(&hub, &i, &post).await,
        |name| go(format!("/ui/i/{name}?done=saved")),
        post.session.ctx(Some(&i), "settings"),
        |ctx| {
            let v = Some(Values::posted(&post.form));
            instance_page(hub, &post.session, &i, ctx, v)
        },
    )
    .await
}

async fn save_instance(hub: &Arc<Hub>, i: &str, post: &Post) -> Result<String, ApiError> {
    let settings = post.form.read(INSTANCE_SETTINGS)?;
    let view = handlers::patch_instance(
        State(hub.clone()),
        post.who(),
        Path(i.into()),
        ApiJson(settings),
    )
    .await?
    .0;
    // The preferred CA account is a flag on the account; the form shows it
    // with the instance because that is where operators look for it.
    let preferred = post.form.get("preferred");
    if !preferred.is_empty() {
        let accounts = relay::list_ca_accounts(State(hub.clone()), post.who(), Path(i.into()))
            .await?
            .0;
        if accounts.iter().any(|a| a.id == preferred && !a.preferred) {
            let settings = crate::issuance::ca_accounts::CaAccountSettings {
                preferred: Some(true),
                ..Default::default()
            };
            let _saved = relay::patch_ca_account(
                State(hub.clone()),
                post.who(),
                Path((i.into(), preferred.into())),
                ApiJson(settings),
            )
            .await?;
        }
    }
    Ok(view.name)
}

pub async fn delete_instance(
    State(hub): Hub_,
    Path(i): Path<String>,
    post: Post,
) -> UiResult<Response> {
    let instance = handlers::show_instance(State(hub.clone()), post.who(), Path(i.clone()))
        .await?
        .0;
    if post.form.get("confirm").trim() != instance.name {
        let mut ctx = post.session.ctx(Some(&i), "settings");
        ctx.error = Some(format!(
            "to delete the instance, type its name ({}) in the box",
            instance.name
        ));
        return instance_page(hub, &post.session, &i, ctx, None).await;
    }
    answer(
        handlers::delete_instance(State(hub.clone()), post.who(), Path(i.clone())).await,
        |_| go("/ui/instances?done=deleted".into()),
        post.session.ctx(Some(&i), "settings"),
        |ctx| instance_page(hub, &post.session, &i, ctx, None),
    )
    .await
}

// ---- CA accounts ----

#[derive(Template)]
#[template(path = "ui/ca_accounts.html")]
struct CaAccountsPage {
    ctx: Ctx,
    /// The CAs the form offers by name (besides a custom directory).
    known: &'static [KnownCa],
    accounts: Vec<CaAccountView>,
    v: Values,
}

#[derive(Template)]
#[template(path = "ui/ca_account.html")]
struct CaAccountPage {
    ctx: Ctx,
    /// The CAs the form offers by name (besides a custom directory).
    known: &'static [KnownCa],
    account: CaAccountView,
    v: Values,
    test: Option<CaTestView>,
    /// The directory's endpoints from the test, name and URL.
    endpoints: Vec<(String, String)>,
}

const CA_COMMON: &[(&str, Field)] = &[
    ("description", Text),
    ("directory_url", Keep),
    ("environment", Keep),
    ("email", Text),
    ("eab_kid", Keep),
    ("eab_hmac_key", Keep),
    ("allow_wildcard", Check),
    ("dns_ttl", Number),
    ("api_timeout_s", Number),
    ("priority", Number),
    ("preferred", Check),
    ("trusted_roots_pem", TextOrNull),
    ("caa_identities", Lines),
];

fn ca_settings(
    form: &Form,
    creating: bool,
) -> Result<crate::issuance::ca_accounts::CaAccountSettings, Error> {
    let mut body = form.json(CA_COMMON)?;
    if creating {
        body.extend(form.json(&[("name", Text), ("ca", Text)])?);
    }
    Form::settings(body)
}

async fn ca_accounts_page(
    hub: Arc<Hub>,
    session: &Session,
    i: &str,
    ctx: Ctx,
    v: Values,
) -> UiResult<Response> {
    let accounts = relay::list_ca_accounts(State(hub), session.who.clone(), Path(i.into()))
        .await?
        .0;
    Ok(render(&CaAccountsPage {
        ctx,
        known: KNOWN_CAS,
        accounts,
        v,
    }))
}

pub async fn ca_accounts(
    session: Session,
    State(hub): Hub_,
    Path(i): Path<String>,
    Query(done): Query<Done>,
) -> UiResult<Response> {
    let ctx = with_notice(session.ctx(Some(&i), "ca-accounts"), &done);
    let v = Values::default().or(&[("ca", "custom"), ("allow_wildcard", "on")]);
    ca_accounts_page(hub, &session, &i, ctx, v).await
}

/// Runs "Save and Test" on a saved account and draws its page with the
/// dialog.
async fn tested(
    hub: Arc<Hub>,
    session: &Session,
    i: &str,
    id: &str,
    ctx: Ctx,
) -> UiResult<Response> {
    let who = session.who.clone();
    let test = relay::test_ca_account(State(hub.clone()), who.clone(), Path((i.into(), id.into())))
        .await?
        .0;
    let account = relay::show_ca_account(State(hub), who, Path((i.into(), id.into())))
        .await?
        .0;
    let endpoints = match &test.endpoints {
        Value::Object(m) => m
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|url| (k.clone(), url.to_string())))
            .collect(),
        _ => Vec::new(),
    };
    let v = Values::of(&account);
    Ok(render(&CaAccountPage {
        ctx,
        known: KNOWN_CAS,
        account,
        v,
        test: Some(test),
        endpoints,
    }))
}

pub async fn create_ca_account(
    State(hub): Hub_,
    Path(i): Path<String>,
    post: Post,
) -> UiResult<Response> {
    let made = with_settings(ca_settings(&post.form, true), |s| {
        relay::create_ca_account(State(hub.clone()), post.who(), Path(i.clone()), s)
    })
    .await;
    let ctx = post.session.ctx(Some(&i), "ca-accounts");
    match made {
        Ok(Created(a)) if post.form.get("action") == "test" => {
            tested(hub, &post.session, &i, &a.id, ctx).await
        }
        made => {
            answer(
                made,
                |Created(a)| go(format!("/ui/i/{i}/ca-accounts/{}?done=created", a.id)),
                ctx,
                |ctx| ca_accounts_page(hub, &post.session, &i, ctx, Values::posted(&post.form)),
            )
            .await
        }
    }
}

async fn ca_account_page(
    hub: Arc<Hub>,
    session: &Session,
    i: &str,
    id: &str,
    ctx: Ctx,
    posted: Option<Values>,
) -> UiResult<Response> {
    let account =
        relay::show_ca_account(State(hub), session.who.clone(), Path((i.into(), id.into())))
            .await?
            .0;
    let v = posted.unwrap_or_else(|| Values::of(&account));
    Ok(render(&CaAccountPage {
        ctx,
        known: KNOWN_CAS,
        account,
        v,
        test: None,
        endpoints: Vec::new(),
    }))
}

pub async fn ca_account(
    session: Session,
    State(hub): Hub_,
    Path((i, id)): Path<(String, String)>,
    Query(done): Query<Done>,
) -> UiResult<Response> {
    let ctx = with_notice(session.ctx(Some(&i), "ca-accounts"), &done);
    ca_account_page(hub, &session, &i, &id, ctx, None).await
}

pub async fn update_ca_account(
    State(hub): Hub_,
    Path((i, id)): Path<(String, String)>,
    post: Post,
) -> UiResult<Response> {
    let at = Path((i.clone(), id.clone()));
    let saved = with_settings(ca_settings(&post.form, false), |s| {
        relay::patch_ca_account(State(hub.clone()), post.who(), at, s)
    })
    .await;
    let ctx = post.session.ctx(Some(&i), "ca-accounts");
    match saved {
        Ok(_) if post.form.get("action") == "test" => {
            tested(hub, &post.session, &i, &id, ctx).await
        }
        saved => {
            answer(
                saved,
                |_| go(format!("/ui/i/{i}/ca-accounts/{id}?done=saved")),
                ctx,
                |ctx| {
                    let v = Some(Values::posted(&post.form));
                    ca_account_page(hub, &post.session, &i, &id, ctx, v)
                },
            )
            .await
        }
    }
}

pub async fn test_ca_account(
    State(hub): Hub_,
    Path((i, id)): Path<(String, String)>,
    post: Post,
) -> UiResult<Response> {
    let ctx = post.session.ctx(Some(&i), "ca-accounts");
    tested(hub, &post.session, &i, &id, ctx).await
}

pub async fn delete_ca_account(
    State(hub): Hub_,
    Path((i, id)): Path<(String, String)>,
    post: Post,
) -> UiResult<Response> {
    let at = Path((i.clone(), id.clone()));
    answer(
        relay::delete_ca_account(State(hub.clone()), post.who(), at).await,
        |_| go(format!("/ui/i/{i}/ca-accounts?done=deleted")),
        post.session.ctx(Some(&i), "ca-accounts"),
        |ctx| ca_account_page(hub, &post.session, &i, &id, ctx, None),
    )
    .await
}

// ---- stored credentials ----

#[derive(Debug, Default, Deserialize)]
pub struct KindQuery {
    kind: Option<String>,
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/credentials.html")]
struct CredentialsPage {
    ctx: Ctx,
    credentials: Vec<CredentialView>,
    kinds: Vec<KindView>,
    /// The kind whose form is shown.
    kind: Option<KindView>,
    v: Values,
}

#[derive(Template)]
#[template(path = "ui/credential.html")]
struct CredentialPage {
    ctx: Ctx,
    credential: CredentialView,
    kind: Option<KindView>,
    v: Values,
}

async fn kinds(session: &Session) -> Vec<KindView> {
    dns::list_kinds(session.who.clone()).await.0
}

async fn credentials_page(
    hub: Arc<Hub>,
    session: &Session,
    i: &str,
    ctx: Ctx,
    kind: &str,
    v: Values,
) -> UiResult<Response> {
    let credentials = dns::list_credentials(State(hub), session.who.clone(), Path(i.into()))
        .await?
        .0;
    let kinds = kinds(session).await;
    let kind = kinds.iter().find(|k| k.name == kind).cloned();
    Ok(render(&CredentialsPage {
        ctx,
        credentials,
        kinds,
        kind,
        v,
    }))
}

pub async fn credentials(
    session: Session,
    State(hub): Hub_,
    Path(i): Path<String>,
    Query(q): Query<KindQuery>,
) -> UiResult<Response> {
    let done = Done { done: q.done };
    let ctx = with_notice(session.ctx(Some(&i), "credentials"), &done);
    let kind = q.kind.unwrap_or_default();
    let v = Values::default().or(&[("kind", &kind)]);
    credentials_page(hub, &session, &i, ctx, &kind, v).await
}

/// A credential's body: the form's fields, `config.*` and `secret.*`; the
/// secret only when one was typed (on update, none keeps the stored one).
fn credential_settings(
    form: &Form,
    creating: bool,
) -> Result<crate::dns::credentials::CredentialSettings, Error> {
    let mut body = form.json(&[("description", Text)])?;
    if creating {
        body.extend(form.json(&[("name", Text), ("kind", Text)])?);
    }
    body.insert("config".into(), Value::Object(form.group("config")));
    let secret = form.group("secret");
    if creating || !secret.is_empty() {
        body.insert("secret".into(), Value::Object(secret));
    }
    Form::settings(body)
}

pub async fn create_credential(
    State(hub): Hub_,
    Path(i): Path<String>,
    post: Post,
) -> UiResult<Response> {
    let made = with_settings(credential_settings(&post.form, true), |s| {
        dns::create_credential(State(hub.clone()), post.who(), Path(i.clone()), s)
    })
    .await;
    answer(
        made,
        |_| go(format!("/ui/i/{i}/credentials?done=created")),
        post.session.ctx(Some(&i), "credentials"),
        |ctx| {
            let (kind, v) = (post.form.get("kind"), Values::posted(&post.form));
            credentials_page(hub, &post.session, &i, ctx, kind, v)
        },
    )
    .await
}

async fn credential_page(
    hub: Arc<Hub>,
    session: &Session,
    i: &str,
    id: &str,
    ctx: Ctx,
    posted: Option<Values>,
) -> UiResult<Response> {
    let credential =
        dns::show_credential(State(hub), session.who.clone(), Path((i.into(), id.into())))
            .await?
            .0;
    let kind = kinds(session)
        .await
        .into_iter()
        .find(|k| k.name == credential.kind);
    let v = posted.unwrap_or_else(|| Values::of(&credential));
    Ok(render(&CredentialPage {
        ctx,
        credential,
        kind,
        v,
    }))
}

pub async fn credential(
    session: Session,
    State(hub): Hub_,
    Path((i, id)): Path<(String, String)>,
    Query(done): Query<Done>,
) -> UiResult<Response> {
    let ctx = with_notice(session.ctx(Some(&i), "credentials"), &done);
    credential_page(hub, &session, &i, &id, ctx, None).await
}

pub async fn update_credential(
    State(hub): Hub_,
    Path((i, id)): Path<(String, String)>,
    post: Post,
) -> UiResult<Response> {
    let rotating = !post.form.group("secret").is_empty();
    let at = Path((i.clone(), id.clone()));
    let saved = with_settings(credential_settings(&post.form, false), |s| {
        dns::patch_credential(State(hub.clone()), post.who(), at, s)
    })
    .await;
    let done = if rotating { "rotated" } else { "saved" };
    answer(
        saved,
        |_| go(format!("/ui/i/{i}/credentials/{id}?done={done}")),
        post.session.ctx(Some(&i), "credentials"),
        |ctx| {
            let v = Some(Values::posted(&post.form));
            credential_page(hub, &post.session, &i, &id, ctx, v)
        },
    )
    .await
}

pub async fn delete_credential(
    State(hub): Hub_,
    Path((i, id)): Path<(String, String)>,
    post: Post,
) -> UiResult<Response> {
    let at = Path((i.clone(), id.clone()));
    answer(
        dns::delete_credential(State(hub.clone()), post.who(), at).await,
        |_| go(format!("/ui/i/{i}/credentials?done=deleted")),
        post.session.ctx(Some(&i), "credentials"),
        |ctx| credential_page(hub, &post.session, &i, &id, ctx, None),
    )
    .await
}

// ---- DNS: zone bindings and delegations ----

#[derive(Template)]
#[template(path = "ui/dns.html")]
struct DnsPage {
    ctx: Ctx,
    zones: Vec<ZoneView>,
    delegations: Vec<DelegationView>,
    credentials: Vec<CredentialView>,
    v: Values,
    zone_test: Option<ZoneTestView>,
}

async fn dns_page(
    hub: Arc<Hub>,
    session: &Session,
    i: &str,
    ctx: Ctx,
    v: Values,
    zone_test: Option<ZoneTestView>,
) -> UiResult<Response> {
    let who = session.who.clone();
    let zones = dns::list_zones(State(hub.clone()), who.clone(), Path(i.into()))
        .await?
        .0;
    let delegations = dns::list_delegations(State(hub.clone()), who.clone(), Path(i.into()))
        .await?
        .0;
    let credentials = dns::list_credentials(State(hub), who, Path(i.into()))
        .await?
        .0;
    Ok(render(&DnsPage {
        ctx,
        zones,
        delegations,
        credentials,
        v,
        zone_test,
    }))
}

pub async fn dns(
    session: Session,
    State(hub): Hub_,
    Path(i): Path<String>,
    Query(done): Query<Done>,
) -> UiResult<Response> {
    let ctx = with_notice(session.ctx(Some(&i), "dns"), &done);
    dns_page(hub, &session, &i, ctx, Values::default(), None).await
}

/// After a DNS post: back to the page with a notice, or the page again
/// with the error and what was typed.
async fn dns_outcome<T>(
    hub: Arc<Hub>,
    post: &Post,
    i: &str,
    result: Result<T, ApiError>,
    done: &str,
) -> UiResult<Response> {
    answer(
        result,
        |_| go(format!("/ui/i/{i}/dns?done={done}")),
        post.session.ctx(Some(i), "dns"),
        |ctx| dns_page(hub, &post.session, i, ctx, Values::posted(&post.form), None),
    )
    .await
}

pub async fn create_zone(
    State(hub): Hub_,
    Path(i): Path<String>,
    post: Post,
) -> UiResult<Response> {
    let result = with_settings(
        post.form.read(&[("zone", Text), ("credential", Text)]),
        |s| dns::create_zone(State(hub.clone()), post.who(), Path(i.clone()), s),
    )
    .await;
    dns_outcome(hub, &post, &i, result, "created").await
}

pub async fn test_zone(
    State(hub): Hub_,
    Path((i, id)): Path<(String, String)>,
    post: Post,
) -> UiResult<Response> {
    let test = dns::test_zone(State(hub.clone()), post.who(), Path((i.clone(), id)))
        .await?
        .0;
    let ctx = post.session.ctx(Some(&i), "dns");
    dns_page(hub, &post.session, &i, ctx, Values::default(), Some(test)).await
}

pub async fn delete_zone(
    State(hub): Hub_,
    Path((i, id)): Path<(String, String)>,
    post: Post,
) -> UiResult<Response> {
    let result = dns::delete_zone(State(hub.clone()), post.who(), Path((i.clone(), id))).await;
    dns_outcome(hub, &post, &i, result, "deleted").await
}

pub async fn create_delegation(
    State(hub): Hub_,
    Path(i): Path<String>,
    post: Post,
) -> UiResult<Response> {
    let result = with_settings(post.form.read(&[("domain", Text)]), |s| {
        dns::create_delegation(State(hub.clone()), post.who(), Path(i.clone()), s)
    })
    .await;
    dns_outcome(hub, &post, &i, result, "created").await
}

pub async fn check_delegation(
    State(hub): Hub_,
    Path((i, id)): Path<(String, String)>,
    post: Post,
) -> UiResult<Response> {
    let result = dns::check_delegation(State(hub.clone()), post.who(), Path((i.clone(), id))).await;
    if post.form.get("live") == "1" {
        // The page's script asking for the current status of one row.
        let d = result?.0;
        return Ok(axum::Json(serde_json::json!({
            "status": d.status,
            "detail": d.detail,
            "checked_at": d.checked_at,
        }))
        .into_response());
    }
    dns_outcome(hub, &post, &i, result, "checked").await
}

pub async fn delete_delegation(
    State(hub): Hub_,
    Path((i, id)): Path<(String, String)>,
    post: Post,
) -> UiResult<Response> {
    let result =
        dns::delete_delegation(State(hub.clone()), post.who(), Path((i.clone(), id))).await;
    dns_outcome(hub, &post, &i, result, "deleted").await
}

// ---- access keys ----

#[derive(Template)]
#[template(path = "ui/keys.html")]
struct AccessKeysPage {
    ctx: Ctx,
    keys: Vec<AccessKeyView>,
    v: Values,
    created: Option<NewAccessKeyView>,
    /// Ready-to-paste client command lines for the new key.
    commands: Vec<(&'static str, String)>,
}

async fn keys_page(
    hub: Arc<Hub>,
    session: &Session,
    i: &str,
    ctx: Ctx,
    v: Values,
    created: Option<NewAccessKeyView>,
) -> UiResult<Response> {
    let keys = handlers::list_access_keys(State(hub), session.who.clone(), Path(i.into()))
        .await?
        .0;
    let commands = created.as_ref().map(client_commands).unwrap_or_default();
    Ok(render(&AccessKeysPage {
        ctx,
        keys,
        v,
        created,
        commands,
    }))
}

/// certbot, lego and acme.sh command lines for a new key. The HMAC key goes
/// as `--opt=VALUE` where a client would read a leading `-` as an option.
fn client_commands(k: &NewAccessKeyView) -> Vec<(&'static str, String)> {
    let name = k
        .key
        .allowed_identifiers
        .iter()
        .find(|p| !p.contains('/'))
        .map(|p| {
            p.strip_prefix("*.")
                .map_or(p.clone(), |rest| format!("www.{rest}"))
        })
        .unwrap_or_else(|| "host.example.com".into());
    let (dir, kid, hmac) = (&k.directory_url, &k.key.kid, &k.hmac_key);
    vec![
        (
            "certbot",
            format!(
                "certbot certonly --server {dir} --eab-kid {kid} --eab-hmac-key={hmac} --agree-tos --register-unsafely-without-email --standalone -d {name}"
            ),
        ),
        (
            "lego",
            format!(
                "lego --server {dir} --eab --kid {kid} --hmac={hmac} --accept-tos --email admin@{name} --domains {name} --http run"
            ),
        ),
        (
            "acme.sh",
            format!(
                "acme.sh --issue --server {dir} --eab-kid {kid} --eab-hmac-key {hmac} --standalone -d {name}"
            ),
        ),
    ]
}

/// What the new-key form starts with.
const KEY_DEFAULTS: &[(&str, &str)] = &[("validation", "challenge")];

pub async fn access_keys(
    session: Session,
    State(hub): Hub_,
    Path(i): Path<String>,
    Query(done): Query<Done>,
) -> UiResult<Response> {
    let ctx = with_notice(session.ctx(Some(&i), "keys"), &done);
    let v = Values::default().or(KEY_DEFAULTS);
    keys_page(hub, &session, &i, ctx, v, None).await
}

const ACCESS_KEY: &[(&str, Field)] = &[
    ("name", Text),
    ("description", Text),
    ("allowed_identifiers", Lines),
    ("allow_wildcard", Check),
    ("validation", Keep),
    ("expires_at", Keep),
];

pub async fn create_access_key(
    State(hub): Hub_,
    Path(i): Path<String>,
    post: Post,
) -> UiResult<Response> {
    let made = with_settings(post.form.read(ACCESS_KEY), |s| {
        handlers::create_access_key(State(hub.clone()), post.who(), Path(i.clone()), s)
    })
    .await;
    let ctx = post.session.ctx(Some(&i), "keys");
    answer(
        made,
        // The HMAC key is shown this once: drawn here, not redirected to.
        |Created(key)| {
            let mut ctx = ctx.clone();
            ctx.notice = Some(format!(
                "Access key {} created. Copy its HMAC key now: it is not shown again.",
                key.key.name
            ));
            let v = Values::default().or(KEY_DEFAULTS);
            keys_page(hub.clone(), &post.session, &i, ctx, v, Some(key))
        },
        ctx.clone(),
        |ctx| {
            let v = Values::posted(&post.form);
            keys_page(hub.clone(), &post.session, &i, ctx, v, None)
        },
    )
    .await
}

pub async fn revoke_access_key(
    State(hub): Hub_,
    Path((i, id)): Path<(String, String)>,
    post: Post,
) -> UiResult<Response> {
    answer(
        handlers::delete_access_key(State(hub.clone()), post.who(), Path((i.clone(), id))).await,
        |_| go(format!("/ui/i/{i}/keys?done=revoked")),
        post.session.ctx(Some(&i), "keys"),
        |ctx| keys_page(hub, &post.session, &i, ctx, Values::default(), None),
    )
    .await
}

// ---- certificates ----

/// An order's or certificate's names, as a list reads.
fn names(identifiers: &[crate::policy::Identifier]) -> String {
    identifiers
        .iter()
        .map(|i| i.value.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A certificate as a row: its names and how urgent its expiry is.
pub struct CertRow {
    pub cert: CertificateView,
    pub names: String,
    /// `ok` (30 days or more), `soon` (under 30), `urgent` (under 7),
    /// `gone` (expired or revoked).
    pub urgency: &'static str,
}

impl CertRow {
    fn new(cert: CertificateView) -> Self {
        let names = names(&cert.identifiers);
        let urgency = match (cert.status.as_str(), cert.days_remaining) {
            ("active", d) if d >= 30 => "ok",
            ("active", d) if d >= 7 => "soon",
            ("active", _) => "urgent",
            _ => "gone",
        };
        Self {
            cert,
            names,
            urgency,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CertificateFilter {
    status: Option<String>,
    identifier: Option<String>,
    expiring_within_days: Option<String>,
    offset: Option<i64>,
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/certificates.html")]
struct CertificatesPage {
    ctx: Ctx,
    /// Certificates the hub obtains and renews itself.
    managed: Vec<ManagedView>,
    key_types: Vec<&'static str>,
    /// The values of the form that adds one.
    m: Values,
    rows: Vec<CertRow>,
    v: Values,
    /// The query string of the next page, when there is one.
    next: Option<String>,
}

/// The query string of a listing's next page: the filters that are set,
/// and the cursor (`offset` or `before`).
fn next_page(v: &Values, filters: &[&str], cursor: &str, at: i64) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for name in filters {
        if !v.get(name).is_empty() {
            query.append_pair(name, v.get(name));
        }
    }
    query.append_pair(cursor, &at.to_string());
    query.finish()
}

/// A listing whose filter the API refused: the page says why and lists
/// nothing; any other failure is the page's.
fn or_filter_error<T: Default>(listed: Result<T, ApiError>, ctx: &mut Ctx) -> UiResult<T> {
    match listed {
        Ok(found) => Ok(found),
        Err(ApiError::Hub(e)) if e.field.is_some() => {
            ctx.error = Some(e.detail);
            Ok(T::default())
        }
        Err(e) => Err(e.into()),
    }
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

async fn certificate_listing(
    hub: &Arc<Hub>,
    session: &Session,
    i: &str,
    q: &CertificateFilter,
) -> Result<(Vec<CertRow>, Option<i64>), ApiError> {
    let expiring = match non_empty(&q.expiring_within_days) {
        Some(d) => Some(d.parse::<i64>().map_err(|_| {
            Error::invalid(
                "expiring_within_days",
                "expiring_within_days must be a whole number of days",
            )
        })?),
        None => None,
    };
    let query = inventory::CertificateQuery {
        status: non_empty(&q.status),
        identifier: non_empty(&q.identifier),
        expiring_within_days: expiring,
    };
    let page = Page {
        limit: Some(100),
        offset: q.offset,
    };
    let listing = inventory::list_certificates(
        State(hub.clone()),
        session.who.clone(),
        Path(i.into()),
        Query(query),
        Query(page),
    )
    .await?
    .0;
    Ok((
        listing.items.into_iter().map(CertRow::new).collect(),
        listing.next_offset,
    ))
}

pub async fn certificates(
    session: Session,
    State(hub): Hub_,
    Path(i): Path<String>,
    Query(q): Query<CertificateFilter>,
) -> UiResult<Response> {
    let done = Done {
        done: q.done.clone(),
    };
    let ctx = with_notice(session.ctx(Some(&i), "certificates"), &done);
    let m = Values::default().or(&[("key_type", KeyType::EcP256.as_str()), ("auto_renew", "on")]);
    certificates_page(hub, &session, &i, ctx, &q, m).await
}

/// The inventory page; `m` is what the "manage a certificate" form shows.
async fn certificates_page(
    hub: Arc<Hub>,
    session: &Session,
    i: &str,
    mut ctx: Ctx,
    q: &CertificateFilter,
    m: Values,
) -> UiResult<Response> {
    let v = Values::of(&serde_json::json!({
        "status": non_empty(&q.status),
        "identifier": non_empty(&q.identifier),
        "expiring_within_days": non_empty(&q.expiring_within_days),
    }));
    let (rows, next) = or_filter_error(certificate_listing(&hub, session, i, q).await, &mut ctx)?;
    let filters = ["status", "identifier", "expiring_within_days"];
    let next = next.map(|offset| next_page(&v, &filters, "offset", offset));
    let managed =
        managed::list_managed_certificates(State(hub.clone()), session.who.clone(), Path(i.into()))
            .await?
            .0;
    Ok(render(&CertificatesPage {
        ctx,
        managed,
        key_types: KeyType::ALL.iter().map(|k| k.as_str()).collect(),
        m,
        rows,
        v,
        next,
    }))
}

const MANAGED: &[(&str, Field)] = &[
    ("name", Text),
    ("identifiers", Lines),
    ("key_type", Keep),
    ("profile", Keep),
    ("auto_renew", Check),
    ("renew_before_days", Number),
    ("keep_key", Check),
    ("tags", Lines),
];

/// "Manage a certificate": the hub orders it now and renews it itself.
pub async fn create_managed(
    State(hub): Hub_,
    Path(i): Path<String>,
    post: Post,
) -> UiResult<Response> {
    let made = with_settings(post.form.read(MANAGED), |s| {
        managed::create_managed_certificate(State(hub.clone()), post.who(), Path(i.clone()), s)
    })
    .await;
    let q = CertificateFilter::default();
    answer(
        made,
        |_| go(format!("/ui/i/{i}/certificates?done=created")),
        post.session.ctx(Some(&i), "certificates"),
        |ctx| certificates_page(hub, &post.session, &i, ctx, &q, Values::posted(&post.form)),
    )
    .await
}

#[derive(Template)]
#[template(path = "ui/certificate.html")]
struct CertificatePage {
    ctx: Ctx,
    row: CertRow,
    /// Other certificates for the same first name, newest first.
    rows: Vec<CertRow>,
}

pub async fn certificate(
    session: Session,
    State(hub): Hub_,
    Path((i, id)): Path<(String, String)>,
    Query(done): Query<Done>,
) -> UiResult<Response> {
    let ctx = with_notice(session.ctx(Some(&i), "certificates"), &done);
    let cert = inventory::show_certificate(
        State(hub.clone()),
        session.who.clone(),
        Path((i.clone(), id)),
    )
    .await?
    .0;
    let first = cert.identifiers.first().map(|n| n.value.clone());
    let history = match first {
        Some(name) => {
            let q = CertificateFilter {
                identifier: Some(name),
                ..Default::default()
            };
            let (rows, _) = certificate_listing(&hub, &session, &i, &q).await?;
            rows.into_iter().filter(|r| r.cert.id != cert.id).collect()
        }
        None => Vec::new(),
    };
    Ok(render(&CertificatePage {
        ctx,
        row: CertRow::new(cert),
        rows: history,
    }))
}

pub async fn revoke_certificate(
    State(hub): Hub_,
    Path((i, id)): Path<(String, String)>,
    post: Post,
) -> UiResult<Response> {
    // Refused, it is the error page: the certificate's page has no form
    // to draw again.
    let reason = post.form.read(&[("reason", Number)])?;
    let at = Path((i.clone(), id.clone()));
    let _revoked =
        inventory::revoke_certificate(State(hub), post.who(), at, ApiJson(reason)).await?;
    Ok(see_other(&format!(
        "/ui/i/{i}/certificates/{id}?done=revoked"
    )))
}

/// "Renew now" on a certificate the hub manages: a new order at once.
pub async fn renew_managed(
    State(hub): Hub_,
    Path((i, id)): Path<(String, String)>,
    post: Post,
) -> UiResult<Response> {
    managed::renew_managed_certificate(State(hub.clone()), post.who(), Path((i.clone(), id)))
        .await?;
    Ok(see_other(&format!("/ui/i/{i}/certificates?done=renewing")))
}

pub async fn download_certificate(
    session: Session,
    State(hub): Hub_,
    Path((i, id)): Path<(String, String)>,
) -> UiResult<Response> {
    let cert = inventory::show_certificate(State(hub), session.who.clone(), Path((i, id)))
        .await?
        .0;
    let name = cert
        .identifiers
        .first()
        .map(|n| n.value.replace('*', "_"))
        .unwrap_or_else(|| cert.serial.clone());
    let pem = cert.chain_pem.unwrap_or_default();
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/pem-certificate-chain".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.pem\""),
            ),
        ],
        pem,
    )
        .into_response())
}

// ---- orders ----

/// A failure as an operator reads it: what happened, the CA's words, and
/// what to do about it.
pub struct Plain {
    pub what: String,
    pub detail: String,
    pub fix: &'static str,
}

/// ACME problem types (RFC 8555 §6.7) in plain words, with the usual fix.
fn plain(problem: &Value) -> Plain {
    let kind = problem
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .rsplit(':')
        .next()
        .unwrap_or("");
    let (what, fix) = match kind {
        "unauthorized" => (
            "The proof did not match",
            "Check that the client published the record or file for this order, and that nothing else answers for the name.",
        ),
        "dns" => (
            "The DNS lookup failed",
            "Check that the name resolves from the hub's resolvers and that its zone's servers answer.",
        ),
        "caa" => (
            "A CAA record forbids this CA",
            "Add a CAA record that allows this CA, or remove the one that forbids it.",
        ),
        "connection" => (
            "The hub could not reach the host",
            "Check that the host answers on port 80 (http-01) or 443 (tls-alpn-01) from the hub.",
        ),
        "incorrectResponse" => (
            "The host answered with something else",
            "Check that the client serves the challenge response at that name and nothing in front of it rewrites it.",
        ),
        "rejectedIdentifier" => (
            "This name may not be ordered here",
            "Widen the access key's allowed identifiers, or order a name it allows.",
        ),
        "rateLimited" => (
            "A rate limit was reached",
            "Wait for the window to pass, or raise the instance's rate limits.",
        ),
        "badCSR" => (
            "The certificate request was refused",
            "Send a CSR whose names are exactly the order's, with an RSA (2048+) or ECDSA P-256/P-384 key.",
        ),
        "externalAccountRequired" => (
            "An access key is needed",
            "Register the client with an access key (EAB kid and HMAC key).",
        ),
        "serverInternal" => (
            "The CA failed",
            "Look at the order's upstream attempts and the hub's log; the order can be placed again.",
        ),
        _ => ("The order failed", "See the CA's words above."),
    };
    Plain {
        what: what.to_string(),
        detail: problem
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        fix,
    }
}

pub struct OrderRow {
    pub order: OrderView,
    pub names: String,
    /// The order's failure, each failed challenge's, and each upstream
    /// CA account's that failed it.
    pub problems: Vec<(String, Plain)>,
    /// The CA account a relayed order went to.
    pub ca_account: Option<String>,
}

impl OrderRow {
    fn new(order: OrderView) -> Self {
        let names = names(&order.identifiers);
        let mut problems = Vec::new();
        if let Some(e) = &order.error {
            problems.push(("order".to_string(), plain(e)));
        }
        for a in &order.authorizations {
            for c in &a.challenges {
                if let Some(e) = &c.error {
                    problems.push((format!("{} {}", c.kind, a.identifier.value), plain(e)));
                }
            }
        }
        // A relayed order: each CA account that failed it, and why.
        let upstream = order.upstream.as_ref();
        for attempt in upstream
            .and_then(|u| u["attempts"].as_array())
            .into_iter()
            .flatten()
        {
            let account = attempt["account"].as_str().unwrap_or("a CA account");
            problems.push((
                format!("upstream {account}"),
                Plain {
                    what: "The upstream CA failed this order".into(),
                    detail: attempt["error"].as_str().unwrap_or("").to_string(),
                    fix: "Press Save and Test on that CA account; with failover on, the next account was tried.",
                },
            ));
        }
        let ca_account = upstream
            .and_then(|u| u["ca_account"].as_str())
            .map(str::to_string);
        Self {
            order,
            names,
            problems,
            ca_account,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct OrderFilter {
    status: Option<String>,
    offset: Option<i64>,
}

#[derive(Template)]
#[template(path = "ui/orders.html")]
struct OrdersPage {
    ctx: Ctx,
    rows: Vec<OrderRow>,
    v: Values,
    next: Option<String>,
}

pub async fn orders(
    session: Session,
    State(hub): Hub_,
    Path(i): Path<String>,
    Query(q): Query<OrderFilter>,
) -> UiResult<Response> {
    let mut ctx = session.ctx(Some(&i), "orders");
    let status = non_empty(&q.status);
    let v = Values::of(&serde_json::json!({ "status": status }));
    let listing = inventory::list_orders(
        State(hub),
        session.who.clone(),
        Path(i.clone()),
        Query(inventory::OrderQuery {
            status: status.clone(),
            account: None,
        }),
        Query(Page {
            limit: Some(100),
            offset: q.offset,
        }),
    )
    .await;
    let (rows, next) = or_filter_error(
        listing.map(|l| {
            (
                l.0.items.into_iter().map(OrderRow::new).collect(),
                l.0.next_offset
                    .map(|o| next_page(&v, &["status"], "offset", o)),
            )
        }),
        &mut ctx,
    )?;
    Ok(render(&OrdersPage { ctx, rows, v, next }))
}

// ---- events ----

#[derive(Debug, Default, Deserialize)]
pub struct EventFilter {
    instance: Option<String>,
    action: Option<String>,
    object: Option<String>,
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "ui/events.html")]
struct EventsPage {
    ctx: Ctx,
    events: Vec<(EventView, String)>,
    instances: Vec<InstanceView>,
    v: Values,
    next: Option<String>,
}

pub async fn events(
    session: Session,
    State(hub): Hub_,
    Query(q): Query<EventFilter>,
) -> UiResult<Response> {
    let instance = non_empty(&q.instance);
    let mut ctx = session.ctx(instance.as_deref(), "events");
    let v = Values::of(&serde_json::json!({
        "instance": instance,
        "action": non_empty(&q.action),
        "object": non_empty(&q.object),
    }));
    let instances = handlers::list_instances(State(hub.clone()), session.who.clone())
        .await?
        .0;
    let listing = inventory::list_events(
        State(hub),
        session.who.clone(),
        Query(inventory::EventQuery {
            instance: instance.clone(),
            action: non_empty(&q.action),
            object: non_empty(&q.object),
            before: q.before,
            limit: Some(100),
        }),
    )
    .await;
    let (events, next) = or_filter_error(
        listing.map(|l| {
            let next = l
                .0
                .next_before
                .map(|before| next_page(&v, &["instance", "action", "object"], "before", before));
            let events =
                l.0.items
                    .into_iter()
                    .map(|e| {
                        let detail = match &e.detail {
                            Value::Null => String::new(),
                            d => d.to_string(),
                        };
                        (e, detail)
                    })
                    .collect();
            (events, next)
        }),
        &mut ctx,
    )?;
    Ok(render(&EventsPage {
        ctx,
        events,
        instances,
        v,
        next,
    }))
}

// ---- access: API tokens and console users (admin tokens only) ----

#[derive(Template)]
#[template(path = "ui/access.html")]
struct AccessPage {
    ctx: Ctx,
    tokens: Vec<crate::admin::views::TokenView>,
    users: Vec<crate::admin::views::UserView>,
    instances: Vec<InstanceView>,
    v: Values,
    /// A token just made: shown this once.
    created: Option<crate::admin::views::NewTokenView>,
}

async fn access_page(
    hub: Arc<Hub>,
    session: &Session,
    mut ctx: Ctx,
    v: Values,
    created: Option<crate::admin::views::NewTokenView>,
) -> UiResult<Response> {
    let who = session.who.clone();
    let tokens = handlers::list_tokens(State(hub.clone()), who.clone())
        .await?
        .0;
    let users = handlers::list_users(State(hub.clone()), who.clone())
        .await?
        .0;
    let instances = handlers::list_instances(State(hub), who).await?.0;
    if ctx.notice.is_none() && created.is_some() {
        ctx.notice = Some("Token created. Copy it now: it is not shown again.".into());
    }
    Ok(render(&AccessPage {
        ctx,
        tokens,
        users,
        instances,
        v,
        created,
    }))
}

pub async fn access(
    session: Session,
    State(hub): Hub_,
    Query(done): Query<Done>,
) -> UiResult<Response> {
    let ctx = with_notice(session.ctx(None, "access"), &done);
    let v = Values::default().or(&[("role", "read"), ("scope", "admin")]);
    access_page(hub, &session, ctx, v, None).await
}

const WHO: &[(&str, Field)] = &[("name", Text), ("scope", Text), ("role", Text)];
const USER: &[(&str, Field)] = &[
    ("name", Text),
    ("password", Text),
    ("scope", Text),
    ("role", Text),
];

pub async fn create_token(State(hub): Hub_, post: Post) -> UiResult<Response> {
    let made = with_settings(post.form.read(WHO), |s| {
        handlers::create_token(State(hub.clone()), post.who(), s)
    })
    .await;
    let ctx = post.session.ctx(None, "access");
    answer(
        made,
        // The token is shown this once: drawn here, not redirected to.
        |Created(token)| {
            let v = Values::default();
            access_page(hub.clone(), &post.session, ctx.clone(), v, Some(token))
        },
        ctx.clone(),
        |ctx| {
            let v = Values::posted(&post.form);
            access_page(hub.clone(), &post.session, ctx, v, None)
        },
    )
    .await
}

pub async fn revoke_token(
    State(hub): Hub_,
    Path(id): Path<String>,
    post: Post,
) -> UiResult<Response> {
    answer(
        handlers::delete_token(State(hub.clone()), post.who(), Path(id)).await,
        |_| go("/ui/access?done=revoked".into()),
        post.session.ctx(None, "access"),
        |ctx| access_page(hub, &post.session, ctx, Values::default(), None),
    )
    .await
}

pub async fn create_user(State(hub): Hub_, post: Post) -> UiResult<Response> {
    let made = with_settings(post.form.read(USER), |s| {
        handlers::create_user(State(hub.clone()), post.who(), s)
    })
    .await;
    answer(
        made,
        |_| go("/ui/access?done=created".into()),
        post.session.ctx(None, "access"),
        |ctx| access_page(hub, &post.session, ctx, Values::posted(&post.form), None),
    )
    .await
}

pub async fn delete_user(
    State(hub): Hub_,
    Path(id): Path<String>,
    post: Post,
) -> UiResult<Response> {
    answer(
        handlers::delete_user(State(hub.clone()), post.who(), Path(id)).await,
        |_| go("/ui/access?done=deleted".into()),
        post.session.ctx(None, "access"),
        |ctx| access_page(hub, &post.session, ctx, Values::default(), None),
    )
    .await
}
