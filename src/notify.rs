//! Notifications: per-instance channels (a webhook, signed with
//! HMAC-SHA256 over the body; email over SMTP with STARTTLS) and an outbox
//! in the store, delivered by a background sweep and retried with backoff.
//! Events: `certificate.issued`, `certificate.renewed`,
//! `certificate.renewal_failing`, `certificate.expiring`,
//! `certificate.revoked`, `delegation.drift`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit::{self, Actor};
use crate::error::{Error, ErrorKind};
use crate::hub::Hub;
use crate::store::{ChannelKind, Instance, Notification, NotificationChannel, NotificationStatus};
use crate::util::{b64, hex, now, random_bytes, random_id};

/// Every event a channel may ask for.
pub const EVENTS: &[&str] = &[
    "certificate.issued",
    "certificate.renewed",
    "certificate.renewal_failing",
    "certificate.expiring",
    "certificate.revoked",
    "delegation.drift",
];
/// A delivery is given this long.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries: doubling from 30 s, capped at an hour, this many attempts in all.
const RETRY_START_SECS: i64 = 30;
const RETRY_CAP_SECS: i64 = 3600;
const MAX_ATTEMPTS: i64 = 12;
/// The header carrying the webhook signature: `sha256=<hex HMAC of the body>`.
pub const SIGNATURE_HEADER: &str = "x-acmehub-signature";
/// The channel config member marking a channel made by an instance-scoped
/// token: its targets follow the instance's target policy, when made and at
/// every delivery (DNS can change in between). A hub-wide token's channels
/// go where the operator said.
const RESTRICTED: &str = "restricted_targets";

/// A channel as sent to the API.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSettings {
    pub name: Option<String>,
    /// `webhook` or `email`.
    pub kind: Option<String>,
    /// Webhook: the `https://` (or `http://`) URL to POST to.
    pub url: Option<String>,
    /// Webhook: the HMAC-SHA256 key (generated and shown once when absent).
    pub secret: Option<String>,
    /// Email: the SMTP server (host name, port 587 by default, STARTTLS).
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    /// Email: PEM roots to trust for the server's certificate (a private mail relay).
    pub smtp_tls_roots_pem: Option<String>,
    pub smtp_username: Option<String>,
    /// Email: the SMTP password; stored sealed, never shown.
    pub smtp_password: Option<String>,
    pub from: Option<String>,
    pub to: Option<Vec<String>>,
    /// Events sent to this channel; all when absent.
    pub events: Option<Vec<String>>,
}

/// The created channel, and the webhook secret when the hub generated it.
pub struct Created {
    pub channel: NotificationChannel,
    pub secret: Option<String>,
}

fn owner(c: &NotificationChannel) -> String {
    crate::secrets::owner("channel", &c.instance_id, &c.id)
}

fn mailbox(text: &str, field: &'static str) -> Result<lettre::message::Mailbox, Error> {
    text.parse()
        .map_err(|_| Error::invalid(field, format!("{text:?} is not an email address")))
}

/// Creates a channel. `hub_wide`: the caller's token reaches the whole
/// hub; otherwise the webhook URL or SMTP host must not resolve to an
/// address the instance's target policy refuses.
pub async fn create_channel(
    hub: &Hub,
    actor: &Actor,
    instance: &Instance,
    s: &ChannelSettings,
    hub_wide: bool,
) -> Result<Created, Error> {
    let name = s
        .name
        .clone()
        .ok_or_else(|| Error::invalid("name", "name is required"))?;
    crate::tenancy::fields::check_name("channel", &name)?;
    let events = s.events.clone().unwrap_or_default();
    if let Some(bad) = events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
        return Err(Error::invalid(
            "events",
            format!("{bad:?} is not an event; events are {}", EVENTS.join(", ")),
        ));
    }
    let kind = ChannelKind::from_text(s.kind.as_deref().unwrap_or_default())
        .ok_or_else(|| Error::invalid("kind", "kind must be webhook or email"))?;
    let at = now();
    let mut channel = NotificationChannel {
        id: random_id(),
        instance_id: instance.id.clone(),
        name,
        kind,
        config: Value::Null,
        sealed_secret: None,
        events,
        enabled: true,
        created_at: at,
        updated_at: at,
    };
    let mut shown = None;
    let secret = match kind {
        ChannelKind::Webhook => {
            let url = s
                .url
                .as_deref()
                .ok_or_else(|| Error::invalid("url", "a webhook needs a url"))?;
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| Error::invalid("url", format!("{url:?} is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "https" | "http") || parsed.host().is_none() {
                return Err(Error::invalid(
                    "url",
                    "the url must be http:// or https:// with a host",
                ));
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(Error::invalid(
                    "url",
                    "the url must not carry a user name or password; the signature authenticates the hub",
                ));
            }
            if !hub_wide {
                let port = parsed.port_or_known_default().unwrap_or(80);
                let host = parsed.host_str().unwrap_or_default();
                crate::tenancy::outbound::check_outbound_target(
                    hub,
                    instance,
                    host,
                    port,
                    "url",
                    "notification target",
                )
                .await?;
            }
            channel.config = json!({"url": url});
            match &s.secret {
                Some(secret) if secret.len() >= 16 && secret.len() <= 512 => secret.clone(),
                Some(_) => {
                    return Err(Error::invalid(
                        "secret",
                        "the secret must be 16 to 512 characters",
                    ));
                }
                None => {
                    let generated = b64(&random_bytes::<32>());
                    shown = Some(generated.clone());
                    generated
                }
            }
        }
        ChannelKind::Email => {
            let host = s
                .smtp_host
                .as_deref()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| Error::invalid("smtp_host", "email needs smtp_host"))?;
            let from = s
                .from
                .as_deref()
                .ok_or_else(|| Error::invalid("from", "email needs from"))?;
            mailbox(from, "from")?;
            let to = s.to.clone().unwrap_or_default();
            if to.is_empty() || to.len() > 50 {
                return Err(Error::invalid("to", "email needs 1 to 50 recipients in to"));
            }
            for r in &to {
                mailbox(r, "to")?;
            }
            if let Some(pem) = &s.smtp_tls_roots_pem {
                lettre::transport::smtp::client::Certificate::from_pem(pem.as_bytes()).map_err(
                    |_| {
                        Error::invalid(
                            "smtp_tls_roots_pem",
                            "smtp_tls_roots_pem is not a PEM certificate",
                        )
                    },
                )?;
            }
            if !hub_wide {
                crate::tenancy::outbound::check_outbound_target(
                    hub,
                    instance,
                    host,
                    s.smtp_port.unwrap_or(587),
                    "smtp_host",
                    "notification target",
                )
                .await?;
            }
            channel.config = json!({
                "smtp_host": host, "smtp_port": s.smtp_port.unwrap_or(587),
                "smtp_username": s.smtp_username, "smtp_tls_roots_pem": s.smtp_tls_roots_pem,
                "from": from, "to": to,
            });
            s.smtp_password.clone().unwrap_or_default()
        }
    };
    if !hub_wide {
        if let Some(config) = channel.config.as_object_mut() {
            config.insert(RESTRICTED.into(), Value::Bool(true));
        }
    }
    if !secret.is_empty() {
        channel.sealed_secret = Some(hub.secrets.seal(secret.as_bytes(), &owner(&channel)));
    }
    hub.store.insert_channel(&channel).await?;
    audit::record(
        hub,
        Some(&instance.id),
        actor,
        "channel.create",
        ("channel", &channel.id),
        json!({"name": channel.name, "kind": channel.kind.as_str()}),
    )
    .await;
    Ok(Created {
        channel,
        secret: shown,
    })
}

pub async fn delete_channel(
    hub: &Hub,
    actor: &Actor,
    c: &NotificationChannel,
) -> Result<(), Error> {
    hub.store.delete_channel(&c.id).await?;
    audit::record(
        hub,
        Some(&c.instance_id),
        actor,
        "channel.delete",
        ("channel", &c.id),
        json!({"name": c.name}),
    )
    .await;
    Ok(())
}

/// Queues `event` for every enabled channel of the instance that takes it;
/// the housekeeping sweep delivers it within seconds. Never fails the
/// caller: a notification that cannot be queued is logged.
pub async fn emit(hub: &Hub, instance_id: &str, event: &str, data: Value) {
    let channels = match hub.store.channels(instance_id).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(event, error = %e, "listing notification channels failed");
            return;
        }
    };
    let at = now();
    for c in channels
        .iter()
        .filter(|c| c.enabled && (c.events.is_empty() || c.events.iter().any(|e| e == event)))
    {
        let id = random_id();
        let body = json!({"id": id, "event": event, "at": crate::util::rfc3339(at), "data": data});
        let n = Notification {
            id,
            channel_id: c.id.clone(),
            instance_id: instance_id.to_string(),
            event: event.to_string(),
            payload: body.to_string(),
            status: NotificationStatus::Pending,
            attempts: 0,
            next_attempt_at: at,
            last_error: None,
            created_at: at,
            sent_at: None,
        };
        if let Err(e) = hub.store.enqueue_notification(&n).await {
            tracing::warn!(event, channel = %c.name, error = %e, "queueing a notification failed");
        }
    }
}

/// Delivers every due notification (the housekeeping sweep), one sweep at
/// a time per hub. The guard is the hub's own, not the process's: a sweep
/// of one hub waiting on a slow webhook must not hold back another hub in
/// the same process (the integration tests run many).
pub async fn sweep(hub: &Hub) -> Result<usize, Error> {
    use std::sync::atomic::Ordering;
    if hub.notify_sweeping.swap(true, Ordering::AcqRel) {
        return Ok(0);
    }
    let outcome = deliver_due(hub).await;
    hub.notify_sweeping.store(false, Ordering::Release);
    outcome
}

async fn deliver_due(hub: &Hub) -> Result<usize, Error> {
    let due = hub.store.due_notifications(now()).await?;
    let mut n = 0;
    // Each notification stands alone: one whose channel cannot be read or
    // whose outcome cannot be written is logged, and the rest go on.
    for notification in due {
        match deliver_one(hub, &notification).await {
            Ok(true) => n += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(notification = %notification.id, error = %e.detail, "a notification could not be handled")
            }
        }
    }
    Ok(n)
}

/// Leases and delivers one notification; false when another worker has it.
async fn deliver_one(hub: &Hub, notification: &crate::store::Notification) -> Result<bool, Error> {
    let at = now();
    let lease = at + DELIVERY_TIMEOUT.as_secs() as i64 * 3;
    if !hub
        .store
        .lease_notification(&notification.id, at, lease)
        .await?
    {
        return Ok(false);
    }
    let attempts = notification.attempts + 1;
    let Some(channel) = hub
        .store
        .channel(&notification.instance_id, &notification.channel_id)
        .await?
    else {
        // Nothing will ever deliver it: say so once instead of retrying.
        hub.store
            .record_delivery(
                &notification.id,
                NotificationStatus::Failed,
                attempts,
                at,
                Some("the channel is gone"),
                at,
            )
            .await?;
        return Ok(true);
    };
    let outcome = deliver(hub, &channel, &notification.event, &notification.payload).await;
    let at = now();
    match outcome {
        Ok(()) => {
            hub.store
                .record_delivery(
                    &notification.id,
                    NotificationStatus::Sent,
                    attempts,
                    at,
                    None,
                    at,
                )
                .await?
        }
        Err(why) => {
            let status = if attempts >= MAX_ATTEMPTS {
                NotificationStatus::Failed
            } else {
                NotificationStatus::Pending
            };
            let wait = (RETRY_START_SECS << (attempts - 1).clamp(0, 16)).min(RETRY_CAP_SECS);
            tracing::warn!(channel = %channel.name, event = %notification.event, attempts, error = %why, "a notification was not delivered");
            hub.store
                .record_delivery(
                    &notification.id,
                    status,
                    attempts,
                    at + wait,
                    Some(&why),
                    at,
                )
                .await?
        }
    }
    Ok(true)
}

/// Sends a sample notification to a channel now; what happened, in words.
pub async fn test_channel(hub: &Hub, c: &NotificationChannel) -> Result<(), String> {
    let body = json!({"id": random_id(), "event": "test", "at": crate::util::rfc3339(now()),
                      "data": {"channel": c.name, "detail": "a test notification from acmehub"}});
    deliver(hub, c, "test", &body.to_string()).await
}

/// For a restricted channel, the checked addresses to deliver to (the
/// lookup is not repeated by the HTTP or SMTP client, so what was checked
/// is what is dialed); `None` for a channel a hub-wide token made.
async fn delivery_addresses(
    hub: &Hub,
    c: &NotificationChannel,
    host: &str,
    port: u16,
) -> Result<Option<Vec<std::net::SocketAddr>>, String> {
    if c.config[RESTRICTED].as_bool() != Some(true) {
        return Ok(None);
    }
    let instance = hub
        .store
        .instance_by_ref(&c.instance_id)
        .await
        .map_err(|e| format!("reading the channel's instance: {e}"))?
        .ok_or("the channel's instance is gone")?;
    let addresses = crate::tenancy::outbound::policed_addresses(hub, &instance, host, port)
        .await
        .map_err(|why| format!("{host}: {why}"))?;
    if addresses.is_empty() {
        return Err(format!("{host} does not resolve"));
    }
    Ok(Some(addresses))
}

fn secret(hub: &Hub, c: &NotificationChannel) -> Result<Option<Vec<u8>>, String> {
    c.sealed_secret
        .as_ref()
        .map(|s| {
            hub.secrets
                .open(s, &owner(c))
                .map_err(|_| "the channel's secret cannot be opened".to_string())
        })
        .transpose()
}

/// A webhook URL as shown in answers and errors: scheme, host and port
/// (its path or query may hold a token).
pub fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}/…",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "the webhook".into(),
    }
}

/// The signature header's value for a body (HMAC-SHA256, hex).
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    format!("sha256={}", hex(ring::hmac::sign(&key, body).as_ref()))
}

async fn deliver(
    hub: &Hub,
    c: &NotificationChannel,
    event: &str,
    body: &str,
) -> Result<(), String> {
    match c.kind {
        ChannelKind::Webhook => {
            let url = c.config["url"].as_str().unwrap_or_default();
            // Errors name the host only: a webhook URL may carry a token.
            let shown = shown_url(url);
            let key = secret(hub, c)?.unwrap_or_default();
            let mut client = reqwest::Client::builder()
                .timeout(DELIVERY_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("acmehub/", env!("CARGO_PKG_VERSION")));
            if let Ok(parsed) = reqwest::Url::parse(url) {
                let host = parsed.host_str().unwrap_or_default();
                let port = parsed.port_or_known_default().unwrap_or(80);
                if let Some(addresses) = delivery_addresses(hub, c, host, port).await? {
                    client = client.resolve_to_addrs(host, &addresses);
                }
            }
            let client = client.build().map_err(|e| e.to_string())?;
            let response = client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("x-acmehub-event", event)
                .header(SIGNATURE_HEADER, signature(&key, body.as_bytes()))
                .body(body.to_string())
                .send()
                .await
                .map_err(|e| format!("{shown}: {}", e.without_url()))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!(
                    "{shown} answered HTTP {}",
                    response.status().as_u16()
                ))
            }
        }
        ChannelKind::Email => send_email(hub, c, event, body).await,
    }
}

async fn send_email(
    hub: &Hub,
    c: &NotificationChannel,
    event: &str,
    body: &str,
) -> Result<(), String> {
    use lettre::AsyncTransport;
    let cfg = &c.config;
    let host = cfg["smtp_host"].as_str().unwrap_or_default();
    let port = cfg["smtp_port"].as_u64().unwrap_or(587) as u16;
    let payload: Value = serde_json::from_str(body).unwrap_or_default();
    let name = payload["data"]["name"]
        .as_str()
        .or(payload["data"]["domain"].as_str())
        .unwrap_or_default();
    let mut message = lettre::Message::builder()
        .from(
            cfg["from"]
                .as_str()
                .unwrap_or_default()
                .parse()
                .map_err(|_| "bad from")?,
        )
        .subject(format!("[acmehub] {event} {name}").trim_end().to_string());
    for to in cfg["to"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        message = message.to(to.parse().map_err(|_| format!("bad recipient {to}"))?);
    }
    let text = format!(
        "{}\n\n{}\n",
        describe(event, &payload["data"]),
        serde_json::to_string_pretty(&payload).unwrap_or_default()
    );
    let message = message
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(text)
        .map_err(|e| format!("building the message: {e}"))?;
    let mut tls = lettre::transport::smtp::client::TlsParameters::builder(host.to_string());
    if let Some(pem) = cfg["smtp_tls_roots_pem"].as_str() {
        let root = lettre::transport::smtp::client::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| format!("smtp_tls_roots_pem: {e}"))?;
        tls = tls.add_root_certificate(root);
    }
    let tls = tls
        .build_rustls()
        .map_err(|e| format!("TLS settings: {e}"))?;
    // A restricted channel dials the address that was checked; TLS still
    // verifies the certificate for the host name.
    let server = match delivery_addresses(hub, c, host, port).await? {
        Some(addresses) => addresses
            .first()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| host.to_string()),
        None => host.to_string(),
    };
    let mut transport =
        lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(server)
            .port(port)
            .tls(lettre::transport::smtp::client::Tls::Required(tls))
            .timeout(Some(DELIVERY_TIMEOUT));
    if let Some(user) = cfg["smtp_username"].as_str() {
        let password = secret(hub, c)?
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .unwrap_or_default();
        transport = transport.credentials(
            lettre::transport::smtp::authentication::Credentials::new(user.to_string(), password),
        );
    }
    transport
        .build()
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("{host}:{port}: {e}"))
}

/// One line for people.
fn describe(event: &str, data: &Value) -> String {
    let name = data["name"].as_str().unwrap_or_default();
    match event {
        "certificate.issued" => format!("The certificate {name} was issued."),
        "certificate.renewed" => format!("The certificate {name} was renewed."),
        "certificate.renewal_failing" => format!(
            "Renewing the certificate {name} keeps failing: {}",
            data["error"].as_str().unwrap_or_default()
        ),
        "certificate.expiring" => format!(
            "The certificate {name} expires in {} days and has not been renewed.",
            data["days_remaining"]
        ),
        "certificate.revoked" => format!("The certificate {name} was revoked."),
        "delegation.drift" => format!(
            "The delegation of {} no longer resolves: {}",
            data["domain"].as_str().unwrap_or_default(),
            data["detail"].as_str().unwrap_or_default()
        ),
        _ => "A test notification from acmehub.".to_string(),
    }
}

/// An error for the API when a test delivery fails.
pub fn undelivered(why: String) -> Error {
    Error::new(ErrorKind::ServerInternal, why)
}
