//! What the proxy reports of its traffic: per minute, project, key and model.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most aggregates one batch may carry.
pub const MAX_USAGE_RECORDS: usize = 10_000;

/// One minute of one key's use of one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageRecord {
    pub project_id: Uuid,
    pub key_id: Uuid,
    pub model: String,
    /// Any instant in the minute; stored truncated to the minute.
    pub minute: DateTime<Utc>,
    pub requests: u64,
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    /// Input tokens served from a prompt cache (included in `input_tokens`).
    #[serde(default)]
    pub cached_tokens: u64,
    /// Input tokens written to a prompt cache (included in `input_tokens`).
    #[serde(default)]
    pub cache_write_tokens: u64,
    #[serde(default)]
    pub latency_ms_sum: u64,
    /// The service tier Mantle served the requests in.
    #[serde(default)]
    pub service_tier: crate::ServiceTier,
}

/// The body of `POST /internal/v1/proxy/usage`. `batch_id` makes a retry harmless.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageBatch {
    pub batch_id: Uuid,
    pub records: Vec<UsageRecord>,
}
