//! Checks of the fields every object an operator names shares (names,
//! descriptions, environments), the PATCH convention that tells `null`
//! from absent, and the refusal of a change an instance-scoped token may
//! not make.

use serde::Deserialize;

use crate::error::Error;
use crate::store::Environment;

/// Longest description accepted.
const MAX_DESCRIPTION: usize = 1000;
/// Distinguishes an explicit `null` (Some(None)) from an absent field (None).
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

pub fn validate_description(text: &str) -> Result<(), Error> {
    if text.chars().count() > MAX_DESCRIPTION {
        return Err(Error::invalid(
            "description",
            format!("the description is longer than {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(())
}

/// `production` or `staging`.
pub fn check_environment(text: &str, field: &str) -> Result<Environment, Error> {
    Environment::from_text(text).ok_or_else(|| {
        Error::invalid(
            field,
            format!("{field} {text:?} is unknown; use \"production\" or \"staging\""),
        )
    })
}

/// Checks the name of an access key, credential or token (`what`): 1 to 64
/// letters, digits, `.`, `_` or `-`.
pub fn check_name(what: &str, name: &str) -> Result<(), Error> {
    if crate::util::is_token(name) {
        Ok(())
    } else {
        Err(Error::invalid(
            "name",
            format!("{what} name {name:?} must be 1 to 64 letters, digits, '.', '_' or '-'"),
        ))
    }
}

/// 403 naming each widening, or nothing.
pub fn refuse_widening(widens: Vec<String>) -> Result<(), Error> {
    if widens.is_empty() {
        return Ok(());
    }
    Err(Error::unauthorized(format!(
        "{} needs a hub-wide token; this token is scoped to one instance and may only narrow \
         these settings. Nothing was changed.",
        widens.join(", and ")
    )))
}
