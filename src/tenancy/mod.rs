//! Who the hub serves: instances (tenants) with their settings
//! ([`instances`]), their access keys ([`access_keys`]), who is asking
//! ([`principals`]: tokens and console users, their scope and role), console
//! users ([`users`]), where an instance may make the hub connect
//! ([`outbound`]), and the field checks every named object shares
//! ([`fields`]). Every field is checked before anything is written, and
//! every change is audited.

pub mod access_keys;
pub mod fields;
pub mod instances;
pub mod outbound;
pub mod principals;
pub mod users;
