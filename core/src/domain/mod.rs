//! Validated domain types. Every value that reaches a service or the store has been
//! parsed into one of these, so the rest of the code never re-checks input.

mod arn;
mod budget_rules;
mod budgets;
mod catalog;
mod conditions;
mod cost_dashboard;
mod costs;
mod enums;
mod focus;
mod keys;
mod money;
mod names;
mod notifications;
mod project;
mod responses;
mod snapshot;
mod tags;
mod usage;

pub use arn::{MAX_PROJECT_RESOURCES, validate_resource_arn, validate_resources};
pub use budget_rules::{BudgetPatch, BudgetView, NewBudget};
pub use budgets::{BUDGET_THRESHOLDS, BudgetEvent, BudgetStatus, thresholds_reached};
pub use catalog::{CatalogModel, ModelSpec, ModelUpsert};
pub use conditions::{Condition, ConditionStatus, ConditionType, ProjectAws, set_condition};
pub use cost_dashboard::{
    CHART_PROJECTS, ChartSeries, CostDashboard, DayCost, MonthEnd, ProjectCost, SeriesKind,
    StoredForecast, TagBreakdown, TagSpend, linear_month_end, month_start, next_month_start,
};
pub use costs::{
    CostDay, CostFigure, CostGroup, CostGroupBy, CostReport, ENVIRONMENT_TAG, EstimateVsBill,
    PROJECT_TAG, ProjectDayDrift, micros_to_usd,
};
pub use enums::{
    BudgetEnforcement, BudgetPeriod, BudgetScope, DataRetention, DestinationKind, Environment,
    MantlePath, ProjectRole, ProjectStatus, Region, RetentionMode, ServiceTier,
};
pub use focus::{FOCUS_COLUMNS, FocusRow, FocusSource, STRATA_COLUMNS, focus_csv};
pub use keys::{
    ApiKey, ApiKeyDraft, CreatedApiKey, KeyCreation, KeyStatus, MAX_KEY_NAME,
    MIN_KEY_LIFETIME_SECS, NewApiKey,
};
pub use money::{Budget, Price};
pub use names::{ModelId, ProjectSlug, Subject, TeamName};
pub use notifications::{
    CreatedDestination, Delivery, Destination, NOTIFICATION_KINDS, NewDestination,
};
pub use project::{
    Member, NewProject, Project, ProjectDraft, ProjectPatch, RateLimits, RateLimitsPatch,
};
pub use responses::{
    MAX_RESPONSE_BATCH, MAX_RESPONSE_CLAIM, MAX_RESPONSE_ID, ResponseBatch, ResponseClaim,
    ResponseCompletion, ResponseRecord, validate_response_id,
};
pub use snapshot::{PolicySnapshot, SnapshotBudget, SnapshotModel, SnapshotProject};
pub use tags::{MAX_PROJECT_TAGS, Tags, validate_tag_key, validate_tag_value, validate_tags};
pub use usage::{
    BucketQuery, BucketWidth, MAX_USAGE_RECORDS, UsageBatch, UsageBucket, UsageDimension,
    UsageGroup, UsageGroupBy, UsageRecord, UsageReport, UsageRow, UsageTotals,
};
