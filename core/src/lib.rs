//! strata's domain: validated types, rules, persistence, authentication and the
//! services the HTTP layer calls. Nothing here knows about HTTP.

pub mod auth;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod keys;
pub mod policy;
pub mod services;
pub mod store;

pub use error::{CoreError, FieldError};

/// The registry is shared with the proxy, so it lives in the contract crate.
pub mod metrics {
    pub use strata_contract::MetricsRegistry;
}
