//! Responses API ids as the control plane keeps them for the proxies: who owns each,
//! and the background ones still to meter.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::FieldError;

/// Longest response id accepted (Mantle's are ~50 characters).
pub const MAX_RESPONSE_ID: usize = 256;
/// Most background responses one claim hands out.
pub const MAX_RESPONSE_CLAIM: u64 = 100;
/// Most responses one `POST /internal/v1/proxy/responses/batch` records.
pub const MAX_RESPONSE_BATCH: usize = 1_000;

/// `POST /internal/v1/proxy/responses/batch`: responses a proxy created, recorded
/// together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseBatch {
    pub records: Vec<ResponseRecord>,
}

/// A response the proxy created: `POST /internal/v1/proxy/responses`; also what the
/// lookups and claims answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseRecord {
    pub id: String,
    pub project_id: Uuid,
    pub key_id: Uuid,
    pub model: String,
    pub background: bool,
    /// Mantle's status when the proxy saw it (`queued`, `completed`, …).
    pub status: String,
    /// Whether its usage is metered already (a plain or streamed response is metered
    /// by the proxy that answered it).
    #[serde(default)]
    pub metered: bool,
    /// The replica that follows it until it finishes (background responses), for a
    /// minute unless it renews the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
}

impl ResponseRecord {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Err(e) = validate_response_id(&self.id) {
            errors.push(FieldError::new("id", e));
        }
        if let Err(e) = crate::ModelId::check(&self.model) {
            errors.push(FieldError::new("model", e));
        }
        if self.status.is_empty() || self.status.len() > 32 {
            errors.push(FieldError::new("status", "must be 1 to 32 characters"));
        }
        if self
            .claimed_by
            .as_ref()
            .is_some_and(|c| c.is_empty() || c.len() > 128)
        {
            errors.push(FieldError::new("claimed_by", "must be 1 to 128 characters"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Ids are opaque to strata, but they go into URLs and logs: printable ASCII, no
/// separators.
pub fn validate_response_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= MAX_RESPONSE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be 1 to {MAX_RESPONSE_ID} letters, digits, '_' or '-'"
        ))
    }
}

/// `POST /internal/v1/proxy/responses/claim`: background responses to follow.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseClaim {
    /// The proxy replica asking (keeps its claims while it renews them).
    pub owner: String,
    pub limit: u64,
    /// How long the claim holds before another replica may take the response.
    pub lease_secs: u64,
}

/// `POST /internal/v1/proxy/responses/{id}/complete`: a background response finished
/// (or is gone); its usage is recorded once, whoever reports it first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseCompletion {
    pub status: String,
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cached_tokens: u64,
    /// Milliseconds from creation to completion, for the latency figures.
    #[serde(default)]
    pub latency_ms: u64,
    /// The service tier Mantle says it served the response in.
    #[serde(default)]
    pub service_tier: crate::ServiceTier,
}
