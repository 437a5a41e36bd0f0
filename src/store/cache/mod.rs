//! What the store keeps in memory between statements: accounts read by id
//! ([`accounts`]), the orders and chains this process just finished
//! ([`finished`]), and the batches of used nonces on their way to
//! PostgreSQL ([`used_nonces`]). Never the only copy of anything.

mod accounts;
mod finished;
mod used_nonces;

pub(super) use accounts::{AccountCache, follow_postgres};
pub use finished::CertificateDownload;
pub(super) use finished::Finished;
pub(super) use used_nonces::UsedNonces;
