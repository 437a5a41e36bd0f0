//! Stored credentials and DNS zone bindings of an instance: every field
//! checked, secrets sealed before they are stored and never returned, and a
//! credential bound to a zone kept until the binding goes.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit::{self, Actor};
use crate::dns::providers;
use crate::error::{Error, ErrorKind};
use crate::hub::Hub;
use crate::policy::Identifier;
use crate::store::{Credential, DnsZone, Instance, StoreError};
use crate::util::{now, random_id};

/// A credential as sent to the API; on update, absent fields keep their value.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialSettings {
    /// Unique within the instance: letters, digits, `.`, `_`, `-`; fixed once created.
    pub name: Option<String>,
    /// A kind from `GET /api/v1/credential-kinds`; fixed once created.
    pub kind: Option<String>,
    pub description: Option<String>,
    /// Non-secret fields of the kind.
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    /// Secret fields of the kind: write-only. On update, replaces the secret (rotation).
    #[schema(value_type = Option<Object>)]
    pub secret: Option<Value>,
}

fn owner(c: &Credential) -> String {
    crate::secrets::owner("credential", &c.instance_id, &c.id)
}

fn field_error((field, why): providers::FieldError) -> Error {
    Error::invalid(field, why)
}

fn kind_of(name: &str) -> Result<&'static providers::Kind, Error> {
    providers::kind(name).ok_or_else(|| {
        Error::invalid(
            "kind",
            format!("kind {name:?} is unknown; GET /api/v1/credential-kinds lists them"),
        )
    })
}

/// Creates a credential; its secret is sealed before it is stored.
pub async fn create_credential(
    hub: &Hub,
    actor: &Actor,
    instance: &Instance,
    s: &CredentialSettings,
) -> Result<Credential, Error> {
    let name = s
        .name
        .clone()
        .ok_or_else(|| Error::invalid("name", "name is required"))?;
    crate::tenancy::fields::check_name("credential", &name)?;
    let kind = kind_of(
        s.kind
            .as_deref()
            .ok_or_else(|| Error::invalid("kind", "kind is required"))?,
    )?;
    let description = s.description.clone().unwrap_or_default();
    crate::tenancy::fields::validate_description(&description)?;
    let config = s.config.clone().unwrap_or_else(|| json!({}));
    let secret = s
        .secret
        .clone()
        .ok_or_else(|| Error::invalid("secret", "secret is required"))?;
    providers::validate(kind, &config, &secret).map_err(field_error)?;
    let now = now();
    let mut credential = Credential {
        id: random_id(),
        instance_id: instance.id.clone(),
        name,
        kind: kind.name.to_string(),
        description,
        config,
        sealed_secret: Vec::new(),
        fingerprint: String::new(),
        created_at: now,
        updated_at: now,
        last_used_at: None,
    };
    seal(hub, &mut credential, &secret);
    hub.store.insert_credential(&credential).await?;
    audit::record(
        hub,
        Some(&instance.id),
        actor,
        "credential.create",
        ("credential", &credential.id),
        json!({"name": credential.name, "kind": credential.kind, "fingerprint": credential.fingerprint}),
    )
    .await;
    Ok(credential)
}

fn seal(hub: &Hub, c: &mut Credential, secret: &Value) {
    let plain = secret.to_string();
    c.sealed_secret = hub.secrets.seal(plain.as_bytes(), &owner(c));
    c.fingerprint = hub.secrets.fingerprint(plain.as_bytes());
}

/// Changes description or config, or rotates the secret.
pub async fn update_credential(
    hub: &Hub,
    actor: &Actor,
    credential: &Credential,
    s: &CredentialSettings,
) -> Result<Credential, Error> {
    if s.name.as_ref().is_some_and(|n| *n != credential.name) {
        return Err(Error::invalid("name", "a credential cannot be renamed"));
    }
    if s.kind.as_ref().is_some_and(|k| *k != credential.kind) {
        return Err(Error::invalid(
            "kind",
            "a credential's kind is fixed; create a new credential for another provider",
        ));
    }
    let kind = kind_of(&credential.kind)?;
    let mut updated = credential.clone();
    if let Some(d) = &s.description {
        crate::tenancy::fields::validate_description(d)?;
        updated.description = d.clone();
    }
    if let Some(config) = &s.config {
        updated.config = config.clone();
    }
    let secret = match &s.secret {
        Some(secret) => secret.clone(),
        None => open_secret(hub, credential)?,
    };
    providers::validate(kind, &updated.config, &secret).map_err(field_error)?;
    let rotated = s.secret.is_some();
    if rotated {
        seal(hub, &mut updated, &secret);
    }
    updated.updated_at = now();
    hub.store
        .update_credential(&updated)
        .await
        .map_err(|e| match e {
            StoreError::Guard => Error::not_found("the credential was deleted meanwhile"),
            other => other.into(),
        })?;
    audit::record(
        hub,
        Some(&credential.instance_id),
        actor,
        if rotated {
            "credential.rotate"
        } else {
            "credential.update"
        },
        ("credential", &credential.id),
        json!({"name": credential.name, "fingerprint": updated.fingerprint}),
    )
    .await;
    Ok(updated)
}

/// Deletes a credential no zone binding uses (409 naming the bindings otherwise).
pub async fn delete_credential(
    hub: &Hub,
    actor: &Actor,
    credential: &Credential,
) -> Result<(), Error> {
    match hub.store.delete_credential(&credential.id).await {
        Ok(()) => {}
        Err(StoreError::Guard) => {
            let zones: Vec<String> = hub
                .store
                .zones_of_credential(&credential.id)
                .await?
                .into_iter()
                .map(|z| z.zone)
                .collect();
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "credential {:?} is used by the zone bindings [{}]; delete those first",
                    credential.name,
                    zones.join(", ")
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    audit::record(
        hub,
        Some(&credential.instance_id),
        actor,
        "credential.delete",
        ("credential", &credential.id),
        json!({"name": credential.name}),
    )
    .await;
    Ok(())
}

/// The credential's secret fields, opened. Only DNS publishing calls this.
pub fn open_secret(hub: &Hub, credential: &Credential) -> Result<Value, Error> {
    let plain = hub
        .secrets
        .open(&credential.sealed_secret, &owner(credential))
        .map_err(|e| Error::internal("opening a stored credential", e))?;
    serde_json::from_slice(&plain)
        .map_err(|_| Error::internal("opening a stored credential", "not JSON"))
}

/// A credential named in a request of `instance`: one of another instance is
/// refused with a message that says so.
pub async fn referenced_credential(
    hub: &Hub,
    instance: &Instance,
    reference: &str,
    field: &str,
) -> Result<Credential, Error> {
    if let Some(c) = hub.store.credential(&instance.id, reference).await? {
        return Ok(c);
    }
    // The same words whether or not another instance has a credential of
    // that name: an instance's caller learns nothing of other instances.
    let detail = format!(
        "there is no credential {reference:?} in instance {:?}",
        instance.name
    );
    Err(Error::invalid(field, detail))
}

/// A zone binding as sent to the API.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZoneSettings {
    /// The zone, e.g. `example.com`; names under it use this binding unless
    /// a longer bound zone covers them.
    pub zone: String,
    /// The credential (id or name) of this instance that may edit the zone.
    pub credential: String,
    /// The provider kind; defaults to the credential's kind.
    pub provider: Option<String>,
}

/// A zone name as stored: a DNS name without wildcard or trailing dot.
pub fn parse_zone(text: &str, field: &str) -> Result<String, Error> {
    let ascii = idna::domain_to_ascii(text)
        .map_err(|_| Error::invalid(field, format!("{text:?} is not a DNS name")))?;
    let id = Identifier::dns(&ascii).map_err(|e| Error::invalid(field, e.detail))?;
    if id.is_wildcard() {
        return Err(Error::invalid(field, "a zone is a name, not a wildcard"));
    }
    Ok(id.value)
}

pub async fn create_zone(
    hub: &Hub,
    actor: &Actor,
    instance: &Instance,
    s: &ZoneSettings,
) -> Result<DnsZone, Error> {
    let zone = parse_zone(&s.zone, "zone")?;
    let credential = referenced_credential(hub, instance, &s.credential, "credential").await?;
    let provider = s
        .provider
        .clone()
        .unwrap_or_else(|| credential.kind.clone());
    if provider != credential.kind {
        return Err(Error::invalid(
            "provider",
            format!(
                "credential {:?} is a {} credential, not {provider}",
                credential.name, credential.kind
            ),
        ));
    }
    if !kind_of(&provider)?.is_dns_provider() {
        return Err(Error::invalid(
            "credential",
            format!(
                "credential {:?} is not a DNS provider credential",
                credential.name
            ),
        ));
    }
    let binding = DnsZone {
        id: random_id(),
        instance_id: instance.id.clone(),
        zone,
        credential_id: credential.id.clone(),
        provider,
        created_at: now(),
    };
    hub.store.insert_zone(&binding).await?;
    audit::record(
        hub,
        Some(&instance.id),
        actor,
        "dns-zone.create",
        ("dns-zone", &binding.id),
        json!({"zone": binding.zone, "credential": credential.name}),
    )
    .await;
    Ok(binding)
}

pub async fn delete_zone(hub: &Hub, actor: &Actor, zone: &DnsZone) -> Result<(), Error> {
    hub.store.delete_zone(&zone.id).await.map_err(|e| match e {
        StoreError::Guard => Error::not_found("the zone binding was deleted meanwhile"),
        other => other.into(),
    })?;
    audit::record(
        hub,
        Some(&zone.instance_id),
        actor,
        "dns-zone.delete",
        ("dns-zone", &zone.id),
        json!({"zone": zone.zone}),
    )
    .await;
    Ok(())
}

/// The binding whose zone is the longest suffix of `name` (at a label boundary).
pub fn longest_match<'a>(zones: &'a [DnsZone], name: &str) -> Option<&'a DnsZone> {
    zones
        .iter()
        .filter(|z| name == z.zone || name.ends_with(&format!(".{}", z.zone)))
        .max_by_key(|z| z.zone.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> DnsZone {
        DnsZone {
            id: name.into(),
            instance_id: "i".into(),
            zone: name.into(),
            credential_id: "c".into(),
            provider: "rfc2136".into(),
            created_at: 0,
        }
    }

    #[test]
    fn the_longest_matching_zone_wins() {
        let zones = vec![
            zone("example.com"),
            zone("dev.example.com"),
            zone("other.org"),
        ];
        let pick = |n: &str| longest_match(&zones, n).map(|z| z.zone.as_str());
        assert_eq!(
            pick("_acme-challenge.a.dev.example.com"),
            Some("dev.example.com")
        );
        assert_eq!(pick("_acme-challenge.www.example.com"), Some("example.com"));
        assert_eq!(pick("example.com"), Some("example.com"));
        assert_eq!(pick("badexample.com"), None);
        assert_eq!(pick("example.com.evil.test"), None);
        assert_eq!(pick("other.org.uk"), None);
    }

    #[test]
    fn zones_are_normalized_names() {
        assert_eq!(parse_zone("Example.COM.", "zone").unwrap(), "example.com");
        assert_eq!(parse_zone("bücher.de", "zone").unwrap(), "xn--bcher-kva.de");
        assert!(parse_zone("*.example.com", "zone").is_err());
        assert!(parse_zone("com", "zone").is_err());
    }
}

/// One step of a zone test: what was done, whether it worked, how long it took.
#[derive(Debug, Clone)]
pub struct Step {
    pub step: &'static str,
    pub ok: bool,
    pub detail: String,
    pub ms: u64,
}

/// "Save and Test" for a zone binding: publish a canary TXT record with the
/// credential, see it on every authoritative nameserver, remove it, and see
/// it gone. Stops at the first failing step, but always tries to clean up.
pub async fn test_zone(hub: &Hub, instance: &Instance, zone: &DnsZone) -> Vec<Step> {
    use crate::dns::publish::{ProviderPublisher, Solver};
    let mut steps = Vec::new();
    let mut run =
        |step: &'static str, started: std::time::Instant, result: Result<String, String>| {
            let ok = result.is_ok();
            steps.push(Step {
                step,
                ok,
                detail: result.unwrap_or_else(|e| e),
                ms: started.elapsed().as_millis() as u64,
            });
            ok
        };
    let started = std::time::Instant::now();
    let solver = match hub
        .store
        .credential(&instance.id, &zone.credential_id)
        .await
    {
        Ok(Some(credential)) => ProviderPublisher::new(hub, zone.clone(), credential)
            .map(|p| Solver::Provider(Box::new(p)))
            .map_err(|e| e.detail),
        Ok(None) => Err("the zone's credential is missing".into()),
        Err(e) => Err(Error::from(e).detail),
    };
    let solver = match solver {
        Ok(s) => {
            run("credential", started, Ok(s.describe()));
            s
        }
        Err(e) => {
            run("credential", started, Err(e));
            return steps;
        }
    };
    let name = format!("_acmehub-test.{}", zone.zone);
    let value = crate::util::random_id();
    let started = std::time::Instant::now();
    let published = solver
        .publish(hub, &name, &value)
        .await
        .map(|()| format!("TXT {name} added"));
    if !run("publish", started, published.map_err(|e| e.detail)) {
        return steps;
    }
    let started = std::time::Instant::now();
    let visible = solver
        .wait_visible(hub, &name, &value)
        .await
        .map(|()| format!("every authoritative nameserver of {} serves it", zone.zone))
        .map_err(|e| e.detail);
    let seen = run("propagation", started, visible);
    let started = std::time::Instant::now();
    let removed = solver
        .cleanup(hub, &name, &value)
        .await
        .map(|()| format!("TXT {name} removed"));
    let removed = run("cleanup", started, removed.map_err(|e| e.detail));
    if seen && removed {
        let started = std::time::Instant::now();
        let gone = crate::dns::propagation::wait(
            hub.validator.resolver(),
            &zone.zone,
            &name,
            &value,
            false,
            hub.config.dns.authoritative_port,
            std::time::Duration::from_secs(hub.config.dns.propagation_timeout_secs.max(1)),
        )
        .await
        .map(|servers| format!("gone from {}", servers.join(", ")));
        run("removal visible", started, gone);
    }
    steps
}
