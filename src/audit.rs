//! The audit log: who did what to which object, appended for every change an
//! operator or an ACME account makes. Details never carry a secret.

use serde_json::Value;

use crate::hub::Hub;
use crate::store::Event;
use crate::util::now;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An admin API token, by name.
    Token(String),
    /// A web console user, by name.
    User(String),
    /// A downstream ACME account, by id.
    Account(String),
    /// Whoever holds a certificate's private key (revocation signed by it).
    CertificateKey,
    /// The hub itself (background work).
    Hub,
}

impl Actor {
    pub fn label(&self) -> String {
        match self {
            Self::Token(name) => format!("token:{name}"),
            Self::User(name) => format!("user:{name}"),
            Self::Account(id) => format!("acme-account:{id}"),
            Self::CertificateKey => "certificate-key".into(),
            Self::Hub => "hub".into(),
        }
    }
}

/// One event, for the store to write in the same transaction as the change
/// it describes (where the hot paths do that), or for [`record`].
pub fn event(
    instance_id: Option<&str>,
    actor: &Actor,
    action: &str,
    object: (&str, &str),
    detail: Value,
) -> Event {
    Event {
        seq: 0,
        at: now(),
        instance_id: instance_id.map(str::to_string),
        actor: actor.label(),
        action: action.to_string(),
        object_type: object.0.to_string(),
        object_id: object.1.to_string(),
        detail: detail.to_string(),
    }
}

/// Appends one event. A failed write is logged, not returned: the change it
/// describes has happened and must not be reported as failed.
pub async fn record(
    hub: &Hub,
    instance_id: Option<&str>,
    actor: &Actor,
    action: &str,
    object: (&str, &str),
    detail: Value,
) {
    let event = event(instance_id, actor, action, object, detail);
    if let Err(e) = hub.store.insert_event(&event).await {
        tracing::error!(action, object_id = object.1, error = %e, "audit event not recorded");
    }
}
