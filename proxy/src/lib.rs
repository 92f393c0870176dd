//! strata's OpenAI-compatible routing proxy (and Anthropic's Messages API for Claude): verifies scoped keys offline against the
//! control plane's JWKS, follows the control plane's policy snapshot (failing closed
//! when it is too old), routes each request to its project's Mantle region signed
//! with the project's role, smooths over Mantle's differences from OpenAI, and meters
//! usage per minute.

mod access;
mod auth;
mod billing;
mod chat;
mod config;
mod control;
mod error;
mod forward;
mod front;
mod keys;
mod limits;
mod messages;
mod metering;
mod metrics;
mod normalize;
mod peek;
mod registry;
mod request_id;
mod responses;
mod routes;
mod snapshot;
mod state;
mod upstream;
mod workers;

pub use access::{Denial, allowed_models, authorize};
pub use config::{ProxyConfig, ProxySettings};
pub use control::{ControlPlaneError, StartError};
pub use error::OpenAiError;
pub use keys::{KeyError, KeyVerifier};
pub use limits::{
    Baseline, Baselines, DEFAULT_SLICE_REQUESTS, Demand, Limit, LimitStore, Limiter, Limits,
    LocalStore, OnStoreError, RedisStore, Reserved, SharedBudget, Window,
};
pub use metering::{Meter, Metered};
pub use normalize::{SseRewriter, Usage};
pub use routes::{listen, serve};
pub use snapshot::{Policy, SnapshotFollower};
pub use state::{Proxy, ProxyState};
