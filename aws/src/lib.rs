//! strata's adapters to AWS. Each external system is a trait (so the reconciler can
//! be tested with fakes) with one implementation over the AWS SDK or, for Mantle,
//! over SigV4-signed HTTP. Every call is counted by service, operation and outcome.

mod api_keys;
mod calls;
mod clients;
mod cost_tags;
mod cost_usage;
mod error;
mod iam;
mod mantle;
mod offline;
#[cfg(test)]
mod sdk_tests;
mod sigv4;
mod sts;
mod tagging;
mod upstream;

use std::collections::BTreeMap;

use async_trait::async_trait;

pub use api_keys::{MAX_LIFETIME as MAX_SHORT_TERM_KEY_LIFETIME, short_term_key};
pub use aws_config::SdkConfig;
pub use calls::{AwsCalls, CallCounts, Outcome};
pub use clients::{
    AwsClients, AwsSettings, DEFAULT_MANTLE_URL, probe_credentials, sdk_config_from_env,
};
pub use error::{AwsError, ErrorKind};
pub use sigv4::{MANTLE_SERVICE, sign_headers};
pub use upstream::{
    AssumedRoles, AuthHeaders, BedrockApiKey, ShortTermApiKeys, UpstreamAuth, UpstreamRequest,
};

pub type TagMap = BTreeMap<String, String>;

/// An IAM role as strata reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub name: String,
    pub arn: String,
    pub path: String,
    /// The trust policy as IAM returns it (URL-encoded JSON).
    pub trust_policy: String,
    pub tags: TagMap,
}

#[derive(Debug, Clone)]
pub struct NewRole<'a> {
    pub name: &'a str,
    pub path: &'a str,
    pub trust_policy: &'a str,
    pub description: &'a str,
    pub tags: &'a TagMap,
}

/// IAM operations on roles and their inline policies.
#[async_trait]
pub trait Iam: Send + Sync {
    async fn get_role(&self, name: &str) -> Result<Option<Role>, AwsError>;
    async fn create_role(&self, role: &NewRole<'_>) -> Result<Role, AwsError>;
    async fn update_trust_policy(&self, role: &str, document: &str) -> Result<(), AwsError>;
    async fn list_role_policies(&self, role: &str) -> Result<Vec<String>, AwsError>;
    /// The document URL-encoded, as IAM returns it; `None` when it does not exist.
    async fn get_role_policy(&self, role: &str, policy: &str) -> Result<Option<String>, AwsError>;
    async fn put_role_policy(
        &self,
        role: &str,
        policy: &str,
        document: &str,
    ) -> Result<(), AwsError>;
    async fn delete_role_policy(&self, role: &str, policy: &str) -> Result<(), AwsError>;
    async fn tag_role(&self, role: &str, tags: &TagMap) -> Result<(), AwsError>;
    async fn untag_role(&self, role: &str, keys: &[String]) -> Result<(), AwsError>;
    async fn delete_role(&self, role: &str) -> Result<(), AwsError>;
}

/// A project in Mantle's Projects API.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct MantleProject {
    pub id: String,
    pub name: String,
    /// `active` or `archived`.
    pub status: String,
    #[serde(default)]
    pub tags: TagMap,
    /// `{"mode": …}`: `default`, `none`, `aws_review`, `provider_data_share` or
    /// `inherit` (what Mantle sets when a create names none).
    #[serde(default)]
    pub data_retention: Option<MantleDataRetention>,
}

/// A Mantle project's data-retention setting (`ProjectDataRetention`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct MantleDataRetention {
    pub mode: String,
}

impl MantleProject {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }

    /// The project's data-retention mode; `inherit` when Mantle names none.
    pub fn retention_mode(&self) -> &str {
        self.data_retention
            .as_ref()
            .map_or("inherit", |d| d.mode.as_str())
    }
}

/// Mantle's Projects API (`/v1/organization/projects`) in one region.
#[async_trait]
pub trait Mantle: Send + Sync {
    /// Every project, following pages; archived ones included.
    async fn list_projects(&self, region: &str) -> Result<Vec<MantleProject>, AwsError>;
    async fn get_project(&self, region: &str, id: &str) -> Result<Option<MantleProject>, AwsError>;
    /// Creates an active project with its tags and data-retention mode.
    async fn create_project(
        &self,
        region: &str,
        name: &str,
        tags: &TagMap,
        retention_mode: &str,
    ) -> Result<MantleProject, AwsError>;
    async fn update_project(
        &self,
        region: &str,
        id: &str,
        update: &MantleUpdate,
    ) -> Result<MantleProject, AwsError>;
    /// Sets the data-retention mode, on its own: AWS takes a new mode only in an
    /// update that changes nothing else.
    async fn set_data_retention(
        &self,
        region: &str,
        id: &str,
        mode: &str,
    ) -> Result<MantleProject, AwsError>;
    async fn archive_project(&self, region: &str, id: &str) -> Result<(), AwsError>;
}

/// `POST /organization/projects/{id}`: only what changes.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct MantleUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "TagMap::is_empty")]
    pub add_tags: TagMap,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_tag_keys: Vec<String>,
}

impl MantleUpdate {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.add_tags.is_empty() && self.remove_tag_keys.is_empty()
    }
}

/// A cost-allocation tag key's state in Cost Explorer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostTagStatus {
    Active,
    Inactive,
    /// AWS has not seen the key on any resource yet (it can take up to 24 h).
    NotSeen,
}

/// Cost Explorer's cost-allocation tags.
#[async_trait]
pub trait CostAllocationTags: Send + Sync {
    async fn statuses(&self, keys: &[String]) -> Result<BTreeMap<String, CostTagStatus>, AwsError>;
    /// Activates up to 20 keys; returns the keys AWS refused, with its reason.
    async fn activate(&self, keys: &[String]) -> Result<BTreeMap<String, String>, AwsError>;
}

/// A `GetCostAndUsage` question: daily cost from `start` up to (not including) `end`,
/// grouped by up to two tag keys, for the given services (all when empty).
#[derive(Debug, Clone, PartialEq)]
pub struct CostQuery {
    pub start: chrono::NaiveDate,
    pub end: chrono::NaiveDate,
    pub group_by: Vec<String>,
    pub services: Vec<String>,
    /// `UnblendedCost`, `AmortizedCost` …
    pub metric: String,
}

/// One day's cost for one group.
#[derive(Debug, Clone, PartialEq)]
pub struct CostRow {
    pub day: chrono::NaiveDate,
    /// (tag key, value) per `group_by` key, in order; the value is empty for cost
    /// that carries no such tag (Cost Explorer's `Key$`).
    pub tags: Vec<(String, String)>,
    /// Millionths of `unit` (USD).
    pub amount_micros: i64,
    pub unit: String,
    /// Cost Explorer may still restate the day.
    pub estimated: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CostPage {
    pub rows: Vec<CostRow>,
    /// More pages follow (each one another billed request).
    pub next_token: Option<String>,
    /// Rows of the answer that could not be read, each said precisely; the others
    /// are kept.
    pub skipped: Vec<SkippedRow>,
}

/// A row of a Cost Explorer answer strata could not use: which call, which row, which
/// field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRow {
    pub operation: String,
    /// The row's day (`TimePeriod.Start`) as Cost Explorer wrote it.
    pub period: String,
    /// The row's group keys (`strata:environment$prod`, …).
    pub group: Vec<String>,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for SkippedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the row of {} for [{}]: {}: {}",
            self.operation,
            self.period,
            self.group.join(", "),
            self.field,
            self.message
        )
    }
}

/// A month-end forecast request: one environment's cost on `[start, end)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastQuery {
    pub start: chrono::NaiveDate,
    pub end: chrono::NaiveDate,
    /// Only cost carrying this tag (key, value), e.g. (`strata:environment`, `prod`).
    pub tag: (String, String),
    pub services: Vec<String>,
    /// `UnblendedCost`, `AmortizedCost` … (as for `GetCostAndUsage`).
    pub metric: String,
}

/// Cost Explorer's forecast total for a `ForecastQuery`.
#[derive(Debug, Clone, PartialEq)]
pub struct CostForecast {
    /// Millionths of `unit`.
    pub amount_micros: i64,
    pub unit: String,
}

/// Cost Explorer's `GetCostAndUsage`, one page (one billed request) per call, and
/// `GetCostForecast` (one billed request).
#[async_trait]
pub trait CostUsage: Send + Sync {
    async fn page(&self, query: &CostQuery, token: Option<&str>) -> Result<CostPage, AwsError>;
    async fn forecast(&self, query: &ForecastQuery) -> Result<CostForecast, AwsError>;
}

/// A resource and its tags, from the tagging API.
#[derive(Debug, Clone, PartialEq)]
pub struct TaggedResource {
    pub arn: String,
    pub tags: TagMap,
}

/// The Resource Groups Tagging API in one region.
#[async_trait]
pub trait Tagging: Send + Sync {
    /// Tags up to 20 resources; returns the ARNs that failed, with the reason.
    async fn tag_resources(
        &self,
        region: &str,
        arns: &[String],
        tags: &TagMap,
    ) -> Result<BTreeMap<String, String>, AwsError>;
    async fn untag_resources(
        &self,
        region: &str,
        arns: &[String],
        keys: &[String],
    ) -> Result<BTreeMap<String, String>, AwsError>;
    /// Every resource carrying `key` (with `value`, when given), following pages.
    async fn resources_tagged(
        &self,
        region: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<Vec<TaggedResource>, AwsError>;
}

/// Who strata runs as.
#[async_trait]
pub trait Identity: Send + Sync {
    async fn account_id(&self) -> Result<String, AwsError>;
}

/// The most resources one TagResources / UntagResources call takes.
pub const MAX_ARNS_PER_TAG_CALL: usize = 20;
/// The most keys one UpdateCostAllocationTagsStatus call takes.
pub const MAX_KEYS_PER_COST_TAG_CALL: usize = 20;
