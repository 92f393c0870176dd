//! sea-orm entities, one module per table; the schema itself lives in `migrations/`.

pub mod api_keys;
pub mod audit_events;
pub mod budget_events;
pub mod budgets;
pub mod cost_coverage;
pub mod cost_daily;
pub mod cost_explorer_calls;
pub mod cost_forecasts;
pub mod idempotency_keys;
pub mod leases;
pub mod models;
pub mod notification_deliveries;
pub mod notification_destinations;
pub mod notifications;
pub mod project_members;
pub mod project_sync;
pub mod project_tags;
pub mod projects;
pub mod reconcile_reports;
pub mod responses;
pub mod signing_keys;
pub mod usage_batches;
pub mod usage_daily;
pub mod usage_minutes;
