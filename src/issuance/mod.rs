//! Where an instance's certificates come from: the hub's own CA (`ca/`) or
//! upstream ACME CAs through the instance's CA accounts. Holds the CA
//! accounts ([`ca_accounts`]: registration, EAB, which account serves an
//! order), the ACME client of upstream CAs ([`upstream`]) and the relay of a
//! downstream order to them ([`relay`]).

pub mod ca_accounts;
pub mod relay;
pub mod upstream;

use crate::error::{Error, ErrorKind};
use crate::store::Instance;

/// `There is no matching ACME account`, with each account considered and
/// why it was passed over.
pub fn no_matching_account(instance: &Instance, reasons: &[String]) -> Error {
    let considered = if reasons.is_empty() {
        "none is configured (POST /api/v1/instances/{i}/ca-accounts)".to_string()
    } else {
        format!("accounts considered: {}", reasons.join("; "))
    };
    Error::new(
        ErrorKind::ServerInternal,
        format!(
            "There is no matching ACME account: instance {:?} issues from upstream CA accounts, \
             and none can serve this order; {considered}",
            instance.name
        ),
    )
}
