//! strata's OpenAI-compatible routing proxy. Built so far: verifying scoped keys
//! offline against the control plane's JWKS (with a cache), following the control
//! plane's policy snapshot (failing closed when it is too old), and the decision a
//! request gets from both. The HTTP server and the routing to Mantle come next.

mod access;
mod keys;
mod snapshot;

pub use access::{Denial, allowed_models, authorize};
pub use keys::{KeyError, KeyVerifier};
pub use snapshot::{Policy, SnapshotFollower};
