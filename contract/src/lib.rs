//! What strata's control plane and its proxy exchange: the policy snapshot, the
//! claims a key carries, usage batches, response records, the credential the proxy
//! presents, and the vocabulary they are written in. The proxy links this crate and not `strata-core`, so it carries
//! no persistence (sea-orm, database drivers).

mod calendar;
mod claims;
mod credential;
mod enums;
mod field_error;
mod limits;
mod metrics;
mod names;
mod owner;
mod responses;
mod secret;
mod snapshot;
mod usage;

pub use calendar::{month_start, next_month_start};
pub use claims::{API_KEY_PREFIX, ApiKeyClaims};
pub use credential::{
    DEFAULT_KEY_ISSUER, DEFAULT_PROXY_AUDIENCE, ProxyCredentialConfig, SecretError,
    read_or_create_secret_file,
};
pub use enums::{
    BudgetEnforcement, BudgetPeriod, BudgetScope, DataRetention, DestinationKind, Environment,
    MantlePath, ProjectRole, ProjectStatus, Region, RetentionMode, ServiceTier,
};
pub use field_error::FieldError;
pub use limits::{RateLimits, from_object};
pub use metrics::MetricsRegistry;
pub use names::{ModelId, ProjectSlug, Subject, TeamName};
pub use owner::lease_owner;
pub use responses::{
    MAX_RESPONSE_BATCH, MAX_RESPONSE_CLAIM, MAX_RESPONSE_ID, ResponseBatch, ResponseClaim,
    ResponseCompletion, ResponseRecord, validate_response_id,
};
pub use secret::Secret;
pub use snapshot::{PolicySnapshot, SnapshotBudget, SnapshotModel, SnapshotProject};
pub use usage::{MAX_USAGE_RECORDS, UsageBatch, UsageRecord};
