//! The integration suite: the real app on port 0 against a real database per test.
//! `STRATA_TEST_BACKEND=postgres|sqlite` picks the database (`scripts/test` runs both).

mod audit;
mod auth;
mod authz;
mod cost_pages;
mod costs;
mod keys;
mod members;
mod migrations;
mod models;
mod ops;
mod outage;
mod projects;
mod proxy_link;
mod reconcile;
mod usage;
mod validation;
