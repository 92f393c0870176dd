//! Metered usage: what the proxy reports (per minute, project, key and model) and what
//! the API shows (totals grouped by model, key or day).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageGroupBy {
    Model,
    Key,
    Day,
    ServiceTier,
}

/// Totals for one group (a model, a key id, a UTC day `YYYY-MM-DD`, or a service
/// tier).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UsageRow {
    pub group: String,
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    /// Input tokens written to a prompt cache (Anthropic models), priced at the
    /// catalog's cache-write price.
    pub cache_write_tokens: u64,
    /// Estimated from the catalog prices when the usage was recorded.
    pub cost_usd: f64,
    /// Mean time the proxy took per request, upstream included.
    pub avg_latency_ms: Option<f64>,
}

/// `GET /api/v1/projects/{id}/usage`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UsageReport {
    pub project_id: Uuid,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: UsageGroupBy,
    pub items: Vec<UsageRow>,
    pub total: UsageRow,
}

impl UsageReport {
    /// The report as CSV, one row per group then the total:
    /// `group,requests,errors,input_tokens,output_tokens,cached_tokens,cost_usd,avg_latency_ms,cache_write_tokens`
    /// (the newest column last, so scripts reading columns by position keep working).
    pub fn to_csv(&self) -> Result<Vec<u8>, String> {
        let mut out = csv::Writer::from_writer(Vec::new());
        out.write_record([
            "group",
            "requests",
            "errors",
            "input_tokens",
            "output_tokens",
            "cached_tokens",
            "cost_usd",
            "avg_latency_ms",
            "cache_write_tokens",
        ])
        .map_err(|e| e.to_string())?;
        for row in self.items.iter().chain(std::iter::once(&self.total)) {
            out.write_record([
                super::costs::spreadsheet_safe(&row.group).into_owned(),
                row.requests.to_string(),
                row.errors.to_string(),
                row.input_tokens.to_string(),
                row.output_tokens.to_string(),
                row.cached_tokens.to_string(),
                row.cost_usd.to_string(),
                row.avg_latency_ms
                    .map(|l| format!("{l:.1}"))
                    .unwrap_or_default(),
                row.cache_write_tokens.to_string(),
            ])
            .map_err(|e| e.to_string())?;
        }
        out.into_inner().map_err(|e| e.to_string())
    }
}

/// How a usage-over-time report cuts time: OpenAI's admin API widths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketWidth {
    Minute,
    Hour,
    Day,
}

impl BucketWidth {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "1m" => Some(Self::Minute),
            "1h" => Some(Self::Hour),
            "1d" => Some(Self::Day),
            _ => None,
        }
    }

    pub fn seconds(self) -> i64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
        }
    }

    /// Buckets per page when the caller names no limit, and the most it may ask for.
    pub fn page_limits(self) -> (u32, u32) {
        match self {
            Self::Minute => (60, 1_440),
            Self::Hour => (24, 168),
            Self::Day => (7, 31),
        }
    }

    /// The start of the bucket that holds `at` (buckets start on UTC boundaries).
    pub fn floor(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let secs = at.timestamp().div_euclid(self.seconds()) * self.seconds();
        DateTime::from_timestamp(secs, 0).unwrap_or(at)
    }
}

/// What usage over time can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UsageDimension {
    Project,
    ApiKey,
    Model,
    ServiceTier,
}

/// The group a result is for: the dimensions grouped by are set, the others `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct UsageGroup {
    pub project_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
    pub model: Option<String>,
    pub service_tier: Option<String>,
}

/// Metered usage added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub requests: i64,
    /// All input, cached and cache-written tokens included.
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    /// Priced at the catalog's prices when the usage was recorded.
    pub cost_micros: i64,
}

/// Usage over `[start, end)`, cut into buckets, optionally grouped and narrowed.
#[derive(Debug, Clone)]
pub struct BucketQuery {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub width: BucketWidth,
    pub group_by: Vec<UsageDimension>,
    /// Empty: every project.
    pub projects: Vec<Uuid>,
    pub api_keys: Vec<Uuid>,
    pub models: Vec<String>,
}

/// One bucket: every group with usage in it, in group order.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageBucket {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub results: Vec<(UsageGroup, UsageTotals)>,
}
