//! acmehub: one ACME endpoint for a whole fleet.
//!
//! The parts follow Boulder's split by security context:
//! - [`acme`] is the front end (WFE): it parses and authenticates requests
//!   (JWS, nonces) and renders RFC 8555 resources and problems;
//! - [`policy`] and [`orders`] decide (RA): identifier rules and the order
//!   state machine;
//! - [`validation`] is the only code that dials customer hosts (VA);
//! - [`issuance`] signs (CA);
//! - [`store`] is the only code that writes SQL (SA);
//! - [`secrets`] seals stored credentials and keys under the master key.
//!
//! - [`admin`] is the operators' front end: the REST API under `/api/v1`;
//! - [`ui`] is the web console under `/ui/`, over the admin API's handlers;
//! - [`notify`] tells people: webhook and email channels, and the outbox
//!   their notifications wait in.
//!
//! [`hub`] holds the long-lived parts, [`server`] wires them into an HTTPS
//! listener, [`jobs`] runs every background loop, [`config`] resolves
//! settings.

pub mod acme;
pub mod admin;
pub mod config;
pub mod dns;
pub mod error;
pub mod hub;
pub mod issuance;
pub mod jobs;
pub mod notify;
pub mod orders;
pub mod policy;
pub mod secrets;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod ui;
pub mod util;
pub mod validation;
