//! The one integration-test binary (each file directly in `tests/` would link its own binary).
//! Every test starts the real server on an ephemeral loopback port with a temporary sled
//! directory and talks real HTTP to it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on the unexpected

mod admin;
mod backup;
mod cli;
mod common;
mod crash;
mod email;
mod errors;
mod hooks;
mod import;
mod keys;
mod logout;
mod mailer;
mod metrics;
mod mfa;
mod mfa_phone;
mod mfa_webauthn;
mod migrate;
mod oauth;
mod operations;
mod packaging;
mod persistence;
mod pg;
mod pg_nodes;
mod phone;
mod public;
mod security_jwt;
mod security_limits;
mod security_load;
mod security_otp;
mod security_process;
mod security_redirects;
mod security_storage;
mod signup;
mod smtp;
mod supervision;
mod token;
mod upgrade;
mod user;
