//! Who may order what. Owns identifier syntax, challenge types, access-key
//! policies and the rate-limit rules applied before any order is stored;
//! never touches the network or the database.

mod access;
mod challenge;
mod client;
mod contacts;
mod identifier;
mod rate;
pub mod sign_in;
mod throttle;

pub use access::{AccessPolicy, Pattern, ValidationMode};
pub use challenge::ChallengeType;
pub use client::{ClientAddr, client_ip};
pub use contacts::validate_contacts;
pub use identifier::{Identifier, IdentifierKind};
pub use rate::{Limit, RateLimits};
pub use sign_in::SignInFailures;
pub use throttle::Throttle;
