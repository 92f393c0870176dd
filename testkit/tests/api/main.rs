//! The integration suite: the real app on port 0 against a real database per test.
//! `STRATA_TEST_BACKEND=postgres|sqlite` picks the database (`scripts/test` runs both).

// A test crate: its helpers may unwrap as its tests do (clippy.toml covers only
// `#[test]` functions and `#[cfg(test)]` modules).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod auth;
mod authz;
mod cost_pages;
mod costs;
mod keys;
mod members;
mod migrations;
mod models;
mod notifications;
mod ops;
mod outage;
mod projects;
mod proxy_link;
mod reconcile;
mod usage;
mod validation;
