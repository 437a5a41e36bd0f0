//! Integration tests: a real hub in-process on a real HTTPS port, driven by
//! real ACME clients (instant-acme, and a raw JWS client for the negative
//! cases), validating against a DNS server and challenge responders inside
//! the test. One binary keeps link time down.

mod abuse;
mod admin;
mod dns;
mod dns_challenges;
mod flows;
mod fuzz;
mod harness;
mod jws_rules;
mod layering;
mod listener;
mod managed;
mod outbound;
mod raw;
mod relay;
mod replicas;
mod scoped;
mod ui;
