//! The policy snapshot the proxy follows: what it needs to decide a request that
//! carries a valid key, without asking the control plane per request.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    BudgetPeriod, BudgetScope, DataRetention, Environment, MantlePath, ModelId, ProjectStatus,
    RateLimits, Region,
};

/// One project as the proxy sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotProject {
    pub id: Uuid,
    pub name: String,
    pub environment: Environment,
    pub region: Region,
    pub status: ProjectStatus,
    pub allowed_models: Vec<ModelId>,
    pub data_retention: DataRetention,
    pub rate_limits: RateLimits,
    pub monthly_budget_usd: Option<f64>,
    /// `proj_…` once the reconciler created the Mantle project.
    pub mantle_project_id: Option<String>,
    /// The role the proxy assumes to call Mantle for this project.
    pub role_arn: Option<String>,
}

/// What the proxy must know about a model to forward a request to it, and to price it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotModel {
    pub id: ModelId,
    pub provider: String,
    /// When the catalog entry last changed (Unix seconds; `created` in `/v1/models`).
    pub updated_at: i64,
    pub supports_chat: bool,
    pub supports_responses: bool,
    /// Anthropic's Messages API (false in older snapshots).
    #[serde(default)]
    pub supports_messages: bool,
    pub supports_streaming: bool,
    pub supports_multiple_choices: bool,
    pub supports_logprobs: bool,
    pub accepts_content_parts: bool,
    pub input_price_micros_per_mtok: i64,
    pub output_price_micros_per_mtok: i64,
    /// Cached input tokens' price; absent from older control planes' snapshots, which
    /// priced them as input.
    #[serde(default)]
    pub cached_input_price_micros_per_mtok: Option<i64>,
    /// Cache writes' price; absent from older snapshots (priced as input).
    #[serde(default)]
    pub cache_write_price_micros_per_mtok: Option<i64>,
    /// A service tier's price as a factor of the prices above (none in older
    /// snapshots: every tier at the standard prices).
    #[serde(default)]
    pub service_tier_price_factors: std::collections::BTreeMap<crate::ServiceTier, f64>,
    /// Where Mantle serves the model (`/v1` in older snapshots).
    #[serde(default)]
    pub mantle_path: MantlePath,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySnapshot {
    /// Changes whenever anything below changes; send it back as `after`.
    pub version: String,
    pub generated_at: DateTime<Utc>,
    pub projects: Vec<SnapshotProject>,
    /// Revoked keys that have not expired yet (expired ones fail on `exp` anyway).
    pub revoked_keys: Vec<Uuid>,
    /// The whole model catalog (a few dozen entries).
    pub models: Vec<SnapshotModel>,
    /// The hard budgets beside the projects' own monthly ones (none in older
    /// snapshots).
    #[serde(default)]
    pub budgets: Vec<SnapshotBudget>,
}

/// A hard budget as the proxy enforces it: the projects (or the key) whose requests
/// count against it, resolved by the control plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotBudget {
    pub id: Uuid,
    pub name: String,
    pub scope: BudgetScope,
    pub target: String,
    pub period: BudgetPeriod,
    pub amount_micros: i64,
    /// Every project the budget covers (none for a key's budget).
    pub projects: Vec<Uuid>,
    /// The key, for a key's budget.
    pub key: Option<Uuid>,
}
