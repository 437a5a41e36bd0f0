//! ACME resources as JSON (RFC 8555 §7.1), built from stored records.

use serde_json::{Value, json};

use crate::hub::Hub;
use crate::orders::{effective_authz_status, effective_order_status};
use crate::policy::ChallengeType;
use crate::store::{Account, Authorization, Challenge, Instance, Order};
use crate::util::{now, rfc3339};

fn problem_value(error: &Option<String>) -> Option<Value> {
    error.as_deref().and_then(|e| serde_json::from_str(e).ok())
}

/// RFC 8555 §7.1.1.
pub fn directory(hub: &Hub, instance: &Instance, offer: &crate::orders::Offer) -> Value {
    let mut meta = serde_json::Map::new();
    if !offer.profiles.is_empty() {
        meta.insert("profiles".into(), json!(offer.profiles));
    }
    if let Some(tos) = &hub.config.acme.terms_of_service {
        meta.insert("termsOfService".into(), json!(tos));
    }
    if let Some(website) = &hub.config.acme.website {
        meta.insert("website".into(), json!(website));
    }
    meta.insert("caaIdentities".into(), json!(offer.caa_identities));
    meta.insert(
        "externalAccountRequired".into(),
        json!(instance.external_account_required),
    );
    let instance = instance.name.as_str();
    json!({
        "newNonce": hub.acme_url(instance, "new-nonce"),
        "newAccount": hub.acme_url(instance, "new-account"),
        "newOrder": hub.acme_url(instance, "new-order"),
        "revokeCert": hub.acme_url(instance, "revoke-cert"),
        "keyChange": hub.acme_url(instance, "key-change"),
        "renewalInfo": hub.acme_url(instance, "renewal-info"),
        "meta": meta,
    })
}

/// RFC 8555 §7.1.2.
pub fn account(hub: &Hub, instance: &str, account: &Account) -> Value {
    json!({
        "status": account.status.as_str(),
        "contact": account.contact,
        "termsOfServiceAgreed": account.tos_agreed,
        "orders": hub.acme_url(instance, &format!("account/{}/orders", account.id)),
    })
}

pub fn order_url(hub: &Hub, instance: &str, order: &Order) -> String {
    hub.acme_url(instance, &format!("order/{}", order.id))
}

/// RFC 8555 §7.1.3.
pub fn order(hub: &Hub, instance: &str, order: &Order) -> Value {
    let mut value = json!({
        "status": effective_order_status(order, now()).as_str(),
        "expires": rfc3339(order.expires_at),
        "identifiers": order.identifiers,
        "authorizations": order.authz_ids.iter().map(|id| hub.acme_url(instance, &format!("authz/{id}"))).collect::<Vec<_>>(),
        "finalize": hub.acme_url(instance, &format!("order/{}/finalize", order.id)),
    });
    if let Some(nb) = order.not_before {
        value["notBefore"] = json!(rfc3339(nb));
    }
    if let Some(na) = order.not_after {
        value["notAfter"] = json!(rfc3339(na));
    }
    if let Some(cert) = &order.certificate_id {
        value["certificate"] = json!(hub.acme_url(instance, &format!("cert/{cert}")));
    }
    if let Some(error) = problem_value(&order.error) {
        value["error"] = error;
    }
    if let Some(replaces) = &order.replaces {
        value["replaces"] = json!(replaces);
    }
    if let Some(profile) = &order.profile {
        value["profile"] = json!(profile);
    }
    value
}

/// RFC 8555 §7.1.4.
pub fn authorization(hub: &Hub, instance: &str, authz: &Authorization) -> Value {
    let mut value = json!({
        "identifier": authz.identifier,
        "status": effective_authz_status(authz.status, authz.expires_at, now()).as_str(),
        "expires": rfc3339(authz.expires_at),
        "challenges": authz.challenges.iter().map(|c| challenge(hub, instance, &authz.account_id, c)).collect::<Vec<_>>(),
    });
    if authz.wildcard {
        value["wildcard"] = json!(true);
    }
    value
}

pub fn challenge_url(hub: &Hub, instance: &str, challenge: &Challenge) -> String {
    hub.acme_url(instance, &format!("chall/{}", challenge.id))
}

/// RFC 8555 §7.1.5 and §8. A dns-persist-01 challenge has no token: it
/// names the issuer domain names a record may use and the account URL it
/// must name (draft-ietf-acme-dns-persist-01 §3.1, as Let's Encrypt and
/// Pebble serve it).
pub fn challenge(hub: &Hub, instance: &str, account_id: &str, c: &Challenge) -> Value {
    let mut value = json!({
        "type": c.kind.as_str(),
        "url": challenge_url(hub, instance, c),
        "status": c.status.as_str(),
    });
    if c.kind == ChallengeType::DnsPersist01 {
        value["issuer-domain-names"] = json!(hub.validator.issuer_domain_names());
        value["accounturi"] = json!(hub.account_url(instance, account_id));
    } else {
        value["token"] = json!(c.token);
    }
    if let Some(at) = c.validated_at {
        value["validated"] = json!(rfc3339(at));
    }
    if let Some(error) = problem_value(&c.error) {
        value["error"] = error;
    }
    value
}
