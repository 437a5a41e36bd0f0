//! acmehub: one ACME endpoint for a whole fleet.
//!
//! Each module holds one concept and sits on one layer; a module uses only
//! modules below it (docs/architecture.md has the map, and
//! `tests/it/layering.rs` keeps it). From the bottom up:
//! - [`util`], [`error`] (the one error type), [`policy`] (rules without
//!   network or database), [`config`], [`telemetry`], [`secrets`], [`jws`];
//! - [`store`] is the only code that writes SQL (Boulder's SA);
//! - the parts the hub holds: [`nonce`], [`validation`] (the only code that
//!   dials customer hosts, the VA), [`ca`] (the hub's own CA), [`zone`] (the
//!   technical zone the hub serves);
//! - [`hub`], the running hub;
//! - the domain: [`audit`], [`tenancy`] (instances, access keys, tokens,
//!   users), [`notify`], [`dns`] (customer DNS: credentials, delegations,
//!   publishing), [`issuance`] (CA accounts and the relay to upstream CAs),
//!   [`orders`] (the order state machine, the RA), [`managed`]
//!   (certificates the hub manages), [`jobs`] (every background loop);
//! - the front ends: [`acme`] (the WFE), [`admin`] (REST API and CLI),
//!   [`ui`] (the web console), [`challenge_api`] (acme-dns and httpreq);
//! - [`bootstrap`] opens a hub, [`server`] serves it.

pub mod acme;
pub mod admin;
pub mod audit;
pub mod bootstrap;
pub mod ca;
pub mod challenge_api;
pub mod config;
pub mod dns;
pub mod error;
pub mod hub;
pub mod issuance;
pub mod jobs;
pub mod jws;
pub mod managed;
pub mod nonce;
pub mod notify;
pub mod orders;
pub mod policy;
pub mod secrets;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tenancy;
pub mod ui;
pub mod util;
pub mod validation;
pub mod zone;
