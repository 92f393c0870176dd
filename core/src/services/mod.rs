//! The rules: every change to strata's state goes through a service method, which
//! validates, checks the current state, writes in one transaction and records the
//! audit event in that same transaction.

mod audit;
mod budget_rules;
mod budgets;
mod catalog;
mod cost_dashboard;
mod costs;
mod estimate_vs_bill;
mod keys;
mod leases;
mod members;
mod notifications;
mod projects;
mod responses;
mod snapshot;
mod usage;
mod usage_buckets;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

pub use audit::{AuditEvent, AuditFilter};
pub use notifications::{DeliveryPolicy, Event, PassReport, record_notification, signature};
pub use projects::{CreateOutcome, IdempotencyKey, ProjectFilter};
pub use strata_contract::lease_owner;

use crate::CoreError;
use crate::clock::Clock;
use crate::store::Store;

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 200;

/// Entry point to the domain services; cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
}

impl Services {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }
}

/// One page of a list and the cursor of the next page, if any.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Cursors are opaque to clients: base64url of the last id seen (ids are UUIDv7, so
/// id order is creation order).
pub fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

pub fn decode_cursor(cursor: &str) -> Result<Uuid, CoreError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| Uuid::from_slice(&b).ok())
        .ok_or_else(|| {
            CoreError::invalid(
                "cursor",
                "is not a cursor returned by this API; start again without it",
            )
        })
}

/// Checks `limit` and returns it, or the default.
pub fn page_size(limit: Option<u64>) -> Result<u64, CoreError> {
    match limit {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        Some(_) => Err(CoreError::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE_SIZE}"),
        )),
    }
}

/// Splits `limit + 1` fetched rows into one page and the cursor of the next.
fn split_page<R>(
    mut rows: Vec<R>,
    limit: u64,
    id: impl Fn(&R) -> Uuid,
) -> (Vec<R>, Option<String>) {
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = if more {
        rows.last().map(|r| encode_cursor(id(r)))
    } else {
        None
    };
    (rows, next_cursor)
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> CoreError {
    CoreError::Internal(format!("stored {what} is invalid: {detail}"))
}
