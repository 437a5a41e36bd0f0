//! Accounts (RFC 8555 §7.3): creation, lookup, contact updates,
//! deactivation and key rollover.

use crate::audit::{self, Actor};
use crate::error::{Error, ErrorKind};
use crate::hub::Hub;
use crate::jws::{AccountKey, ExternalAccountBinding};
use crate::policy::validate_contacts;
use crate::store::{AccessKey, Account, Instance, StoreError};

/// What a newAccount request asks for (RFC 8555 §7.3), already decoded.
#[derive(Debug, Clone, Default)]
pub struct AccountRequest {
    pub contact: Vec<String>,
    pub tos_agreed: bool,
    pub only_return_existing: bool,
    /// The `externalAccountBinding` JWS, as sent.
    pub external_account_binding: Option<serde_json::Value>,
}

/// RFC 8555 §7.3.4: the access key an External Account Binding names, after
/// its MAC verified and the key proved usable.
async fn bound_access_key(
    hub: &Hub,
    instance: &Instance,
    key: &AccountKey,
    binding: &serde_json::Value,
) -> Result<AccessKey, Error> {
    let url = hub.acme_url(&instance.name, "new-account");
    let binding = ExternalAccountBinding::parse(binding, key, &url)?;
    let access_key = hub
        .store
        .access_key_by_kid(&instance.id, &binding.kid)
        .await?
        .ok_or_else(|| {
            Error::unauthorized(format!(
                "external account key {:?} is unknown at instance {:?}",
                binding.kid, instance.name
            ))
        })?;
    let hmac_key = hub
        .secrets
        .open(
            &access_key.hmac_key,
            &crate::secrets::owner("access-key", &access_key.instance_id, &access_key.id),
        )
        .map_err(|e| Error::internal("opening an access key", e))?;
    binding.verify(&hmac_key)?;
    if let Some(why) = crate::tenancy::access_keys::key_unusable(&access_key, crate::util::now()) {
        return Err(Error::unauthorized(format!(
            "{why}: it cannot register accounts"
        )));
    }
    Ok(access_key)
}

/// Binds an account registered without EAB to the access key of a valid binding.
async fn bind_existing(
    hub: &Hub,
    instance: &Instance,
    key: &AccountKey,
    binding: &serde_json::Value,
    account: Account,
) -> Result<(Account, bool), Error> {
    let access_key = bound_access_key(hub, instance, key, binding).await?;
    match hub
        .store
        .bind_account_key(&account.id, &access_key.id)
        .await
    {
        Ok(()) => {
            audit::record(
                hub,
                Some(&instance.id),
                &Actor::Account(account.id.clone()),
                "account.bind",
                ("account", &account.id),
                serde_json::json!({"access_key": access_key.name}),
            )
            .await;
        }
        // Bound concurrently by another request: that binding stands.
        Err(StoreError::Guard) => {}
        Err(e) => return Err(e.into()),
    }
    let account = hub
        .store
        .account(&instance.id, &account.id)
        .await?
        .ok_or_else(|| Error::internal("binding an account", "account vanished"))?;
    Ok((account, false))
}

/// RFC 8555 §7.3: finds the account of `key`, or creates one, bound to the
/// access key of its External Account Binding when it has one.
/// Returns the account and whether it was created now.
pub async fn new_account(
    hub: &Hub,
    instance: &Instance,
    key: &AccountKey,
    request: &AccountRequest,
) -> Result<(Account, bool), Error> {
    let AccountRequest {
        contact,
        tos_agreed,
        only_return_existing,
        external_account_binding,
    } = request;
    let (tos_agreed, only_return_existing) = (*tos_agreed, *only_return_existing);
    let thumbprint = key.thumbprint();
    if let Some(existing) = hub
        .store
        .account_by_thumbprint(&instance.id, &thumbprint)
        .await?
    {
        return match (external_account_binding, &existing.access_key_id) {
            // An account from before the instance required EAB gets bound now.
            (Some(binding), None) => bind_existing(hub, instance, key, binding, existing).await,
            _ => Ok((existing, false)),
        };
    }
    if only_return_existing {
        return Err(Error::new(
            ErrorKind::AccountDoesNotExist,
            "no account exists for this key at this instance",
        ));
    }
    if hub.config.acme.terms_of_service.is_some() && !tos_agreed {
        return Err(Error::malformed(
            "you must agree to the terms of service (termsOfServiceAgreed: true)",
        ));
    }
    let contact = validate_contacts(contact)?;
    let access_key = match external_account_binding {
        Some(binding) => Some(bound_access_key(hub, instance, key, binding).await?),
        None if instance.external_account_required => {
            return Err(Error::new(
                ErrorKind::ExternalAccountRequired,
                format!(
                    "instance {:?} requires an external account binding: ask its operator for an \
                     access key and pass its kid and HMAC key (certbot --eab-kid/--eab-hmac-key, \
                     lego --eab --kid --hmac)",
                    instance.name
                ),
            ));
        }
        None => None,
    };
    let jwk = key.to_jwk().to_string();
    match hub
        .store
        .insert_account(
            &instance.id,
            &thumbprint,
            &jwk,
            &contact,
            tos_agreed,
            access_key.as_ref().map(|k| k.id.as_str()),
        )
        .await
    {
        Ok(account) => {
            metrics::counter!("acmehub_accounts_created_total").increment(1);
            tracing::info!(account = %account.id, instance = %instance.name,
                access_key = access_key.as_ref().map(|k| k.name.as_str()), "account created");
            audit::record(
                hub,
                Some(&instance.id),
                &Actor::Account(account.id.clone()),
                "account.create",
                ("account", &account.id),
                serde_json::json!({"access_key": access_key.as_ref().map(|k| &k.name)}),
            )
            .await;
            Ok((account, true))
        }
        // Two concurrent newAccount requests with one key: the loser returns the winner's account.
        Err(StoreError::Conflict(_)) => hub
            .store
            .account_by_thumbprint(&instance.id, &thumbprint)
            .await?
            .map(|a| (a, false))
            .ok_or_else(|| Error::internal("creating an account", "conflict without a row")),
        Err(e) => Err(e.into()),
    }
}

/// RFC 8555 §7.3.2 and §7.3.6: contact update or deactivation.
pub async fn update_account(
    hub: &Hub,
    account: &Account,
    contact: Option<&[String]>,
    status: Option<&str>,
) -> Result<(), Error> {
    match status {
        None => {}
        Some("deactivated") => {
            hub.store
                .deactivate_account(&account.id)
                .await
                .map_err(|e| match e {
                    StoreError::Guard => Error::unauthorized("the account is not valid"),
                    other => other.into(),
                })?;
            tracing::info!(account = %account.id, "account deactivated");
            audit::record(
                hub,
                Some(&account.instance_id),
                &Actor::Account(account.id.clone()),
                "account.deactivate",
                ("account", &account.id),
                serde_json::json!({}),
            )
            .await;
            return Ok(());
        }
        Some(other) => {
            return Err(Error::malformed(format!(
                "an account's status can only be set to \"deactivated\", not {other:?}"
            )));
        }
    }
    if let Some(contact) = contact {
        let contact = validate_contacts(contact)?;
        hub.store
            .update_account_contact(&account.id, &contact)
            .await
            .map_err(|e| match e {
                StoreError::Guard => Error::unauthorized("the account is not valid"),
                other => other.into(),
            })?;
    }
    Ok(())
}

/// RFC 8555 §7.3.5: moves the account to `new_key`; 409 when that key is in use.
pub async fn change_key(hub: &Hub, account: &Account, new_key: &AccountKey) -> Result<(), Error> {
    let thumbprint = new_key.thumbprint();
    if thumbprint == account.key_thumbprint {
        return Err(Error::malformed("the new key is the account's current key"));
    }
    hub.store
        .change_account_key(
            &account.id,
            &account.key_thumbprint,
            &thumbprint,
            &new_key.to_jwk().to_string(),
        )
        .await
        .map_err(|e| match e {
            StoreError::Guard => Error::unauthorized(
                "the account key changed concurrently or the account is not valid",
            ),
            other => other.into(),
        })?;
    tracing::info!(account = %account.id, "account key changed");
    audit::record(
        hub,
        Some(&account.instance_id),
        &Actor::Account(account.id.clone()),
        "account.key-change",
        ("account", &account.id),
        serde_json::json!({"new_key_thumbprint": thumbprint}),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_must_be_single_mailto_addresses() {
        assert!(validate_contacts(&["mailto:ops@example.com".into()]).is_ok());
        let kind = |c: &str| validate_contacts(&[c.to_string()]).unwrap_err().kind;
        assert_eq!(kind("tel:+1555"), ErrorKind::UnsupportedContact);
        assert_eq!(
            kind("mailto:a@b.example.com?subject=x"),
            ErrorKind::InvalidContact
        );
        assert_eq!(
            kind("mailto:a@b.example.com,c@d.example.com"),
            ErrorKind::InvalidContact
        );
        assert_eq!(kind("mailto:nobody"), ErrorKind::InvalidContact);
        assert_eq!(kind("mailto:a@bad_domain"), ErrorKind::InvalidContact);
    }
}
