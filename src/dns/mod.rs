//! DNS that the hub publishes or serves: today a small in-memory authoritative
//! server ([`memory::MemoryDns`]) that integration tests use as "the internet's
//! DNS" and that grows into the technical zone the hub serves for delegations.
//! This module answers queries; it must never dial customer hosts (that is
//! `validation/`'s job) nor hold provider credentials in logs or errors.

pub mod memory;
