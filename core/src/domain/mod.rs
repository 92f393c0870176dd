//! Validated domain types. Every value that reaches a service or the store has been
//! parsed into one of these, so the rest of the code never re-checks input.

mod arn;
mod budget_rules;
mod budgets;
mod catalog;
mod conditions;
mod cost_dashboard;
mod costs;
mod focus;
mod keys;
mod money;
mod notifications;
mod project;
mod tags;
mod usage;

pub use arn::{MAX_PROJECT_RESOURCES, validate_resource_arn, validate_resources};
pub use budget_rules::{BudgetPatch, BudgetView, NewBudget};
pub use budgets::{BUDGET_THRESHOLDS, BudgetEvent, BudgetStatus, thresholds_reached};
pub use catalog::{CatalogModel, ModelSpec, ModelUpsert};
pub use conditions::{Condition, ConditionStatus, ConditionType, ProjectAws, set_condition};
pub use cost_dashboard::{
    CHART_PROJECTS, ChartSeries, CostDashboard, DayCost, MonthEnd, ProjectCost, SeriesKind,
    StoredForecast, TagBreakdown, TagSpend, linear_month_end,
};
pub use costs::{
    CostDay, CostFigure, CostGroup, CostGroupBy, CostReport, ENVIRONMENT_TAG, EstimateVsBill,
    PROJECT_TAG, ProjectDayDrift, micros_to_usd,
};
pub use focus::{FOCUS_COLUMNS, FocusRow, FocusSource, STRATA_COLUMNS, focus_csv};
pub use keys::{
    ApiKey, ApiKeyDraft, CreatedApiKey, KeyCreation, KeyStatus, MAX_KEY_NAME,
    MIN_KEY_LIFETIME_SECS, NewApiKey,
};
pub use money::{Budget, Price};
pub use notifications::{
    CreatedDestination, Delivery, Destination, NOTIFICATION_KINDS, NewDestination,
};
pub use project::{Member, NewProject, Project, ProjectDraft, ProjectPatch, RateLimitsPatch};
pub use tags::{MAX_PROJECT_TAGS, Tags, validate_tag_key, validate_tag_value, validate_tags};
pub use usage::{
    BucketQuery, BucketWidth, UsageBucket, UsageDimension, UsageGroup, UsageGroupBy, UsageReport,
    UsageRow, UsageTotals,
};
// The types the proxy shares, defined in the contract crate.
pub use strata_contract::{
    BudgetEnforcement, BudgetPeriod, BudgetScope, DataRetention, DestinationKind, Environment,
    MAX_RESPONSE_BATCH, MAX_RESPONSE_CLAIM, MAX_RESPONSE_ID, MAX_USAGE_RECORDS, MantlePath,
    ModelId, PolicySnapshot, ProjectRole, ProjectSlug, ProjectStatus, RateLimits, Region,
    ResponseBatch, ResponseClaim, ResponseCompletion, ResponseRecord, RetentionMode, ServiceTier,
    SnapshotBudget, SnapshotModel, SnapshotProject, Subject, TeamName, UsageBatch, UsageRecord,
    month_start, next_month_start, validate_response_id,
};
