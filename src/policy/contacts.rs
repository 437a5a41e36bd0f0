//! Which contact URLs an account may give (RFC 8555 §7.3 lets a server
//! restrict schemes): one plain `mailto:` address each.

use crate::error::{Error, ErrorKind};

/// Most contact URLs one account may list.
pub const MAX_CONTACTS: usize = 10;

/// Checks account contacts: only `mailto:` URLs with one plain address
/// (RFC 8555 §7.3 lets a server restrict schemes; §7.3 `unsupportedContact`).
pub fn validate_contacts(contact: &[String]) -> Result<Vec<String>, Error> {
    if contact.len() > MAX_CONTACTS {
        return Err(Error::new(
            ErrorKind::InvalidContact,
            format!("at most {MAX_CONTACTS} contacts are allowed"),
        ));
    }
    let mut out = Vec::with_capacity(contact.len());
    for c in contact {
        let Some(address) = c.strip_prefix("mailto:") else {
            return Err(Error::new(
                ErrorKind::UnsupportedContact,
                format!("contact {c:?} is not supported: only mailto: URLs are"),
            ));
        };
        let invalid = |why: &str| {
            Error::new(
                ErrorKind::InvalidContact,
                format!("contact {c:?} is invalid: {why}"),
            )
        };
        if address.contains(['?', ',', ' ', '<', '>', '%']) || address.len() > 254 {
            return Err(invalid(
                "give exactly one plain e-mail address, without headers",
            ));
        }
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Err(invalid("the address has no @"));
        };
        if local.is_empty() || local.contains('@') {
            return Err(invalid("the local part is empty or has an @"));
        }
        if super::Identifier::dns(domain).is_err() || domain.starts_with("*.") {
            return Err(invalid("the domain is not a valid DNS name"));
        }
        out.push(c.clone());
    }
    Ok(out)
}
