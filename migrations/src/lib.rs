//! strata's schema, one migration per step, each with `down`. Written with the
//! portable schema builder so Postgres and SQLite get the same tables; the few
//! statements that need raw SQL use syntax both accept.

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_model_catalog;
mod m20261126_000002_projects;
mod m20261126_000003_audit_events;
mod m20261126_000004_idempotency_and_signing_keys;
mod m20261126_000005_reconciler;
mod m20261126_000006_api_keys;
mod m20261126_000007_usage;
mod m20261126_000008_model_capabilities;
mod m20261127_000009_costs;
mod m20261127_000010_cost_forecasts;
mod m20261127_000011_cost_page_speed;
mod m20261127_000012_limits;
mod m20261127_000013_responses;
mod m20261206_000014_mantle_fidelity;
mod m20261206_000015_messages_api;
mod m20261206_000016_service_tiers;
mod m20261206_000017_mantle_model_ids;
mod m20261206_000018_notifications;
mod m20261206_000019_budgets;
mod m20261206_000020_budget_revisions;
mod m20261206_000021_responses_unmetered_index;
mod m20261207_000022_responses_digest_key;
mod m20261207_000023_responses_created_brin;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_model_catalog::Migration),
            Box::new(m20261126_000002_projects::Migration),
            Box::new(m20261126_000003_audit_events::Migration),
            Box::new(m20261126_000004_idempotency_and_signing_keys::Migration),
            Box::new(m20261126_000005_reconciler::Migration),
            Box::new(m20261126_000006_api_keys::Migration),
            Box::new(m20261126_000007_usage::Migration),
            Box::new(m20261126_000008_model_capabilities::Migration),
            Box::new(m20261127_000009_costs::Migration),
            Box::new(m20261127_000010_cost_forecasts::Migration),
            Box::new(m20261127_000011_cost_page_speed::Migration),
            Box::new(m20261127_000012_limits::Migration),
            Box::new(m20261127_000013_responses::Migration),
            Box::new(m20261206_000014_mantle_fidelity::Migration),
            Box::new(m20261206_000015_messages_api::Migration),
            Box::new(m20261206_000016_service_tiers::Migration),
            Box::new(m20261206_000017_mantle_model_ids::Migration),
            Box::new(m20261206_000018_notifications::Migration),
            Box::new(m20261206_000019_budgets::Migration),
            Box::new(m20261206_000020_budget_revisions::Migration),
            Box::new(m20261206_000021_responses_unmetered_index::Migration),
            Box::new(m20261207_000022_responses_digest_key::Migration),
            Box::new(m20261207_000023_responses_created_brin::Migration),
        ]
    }
}

/// Applies pending migrations. On Postgres it first takes a transaction-scoped
/// advisory lock, so replicas that start together migrate one after the other
/// instead of racing on the same DDL; SQLite serializes writers by itself.
pub async fn up(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, TransactionTrait};
    if db.get_database_backend() != DbBackend::Postgres {
        return Migrator::up(db, None).await;
    }
    let lock = db.begin().await?;
    // An arbitrary constant naming "strata schema migrations".
    lock.execute_unprepared("SELECT pg_advisory_xact_lock(7345810213)")
        .await?;
    let result = Migrator::up(db, None).await;
    lock.commit().await?;
    result
}
