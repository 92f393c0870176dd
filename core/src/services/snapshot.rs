//! The policy snapshot for the proxy, and a cheap version of it to poll.

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
};
use uuid::Uuid;

use super::Services;
use crate::CoreError;
use crate::domain::{Budget, PolicySnapshot, SnapshotModel, SnapshotProject};
use crate::store::entities::{api_keys, project_sync, projects};

/// Order-independent aggregates, so a change whose transaction commits after a later
/// one is still seen: every project write bumps `resource_version` (the sum grows),
/// revocations only ever add revoked rows, the reconciler fills in AWS ids, and every
/// catalog edit bumps the model's `revision`, every budget write the budgets' counter. A
/// `max(updated_at)` would miss a commit that lands late with an earlier timestamp.
const VERSION_SQL: &str = "SELECT \
    (SELECT COUNT(*) FROM projects), \
    (SELECT CAST(COALESCE(SUM(resource_version), 0) AS BIGINT) FROM projects), \
    (SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NOT NULL), \
    (SELECT COUNT(mantle_project_id) + COUNT(role_arn) FROM project_sync), \
    (SELECT COUNT(*) FROM models), \
    (SELECT CAST(COALESCE(SUM(revision), 0) AS BIGINT) FROM models), \
    (SELECT COALESCE(MAX(value), 0) FROM change_counters WHERE name = 'budgets')";

impl Services {
    /// A string that changes whenever the snapshot would.
    pub async fn policy_version(&self) -> Result<String, CoreError> {
        let db = self.store.db();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                VERSION_SQL,
            ))
            .await?
            .ok_or_else(|| CoreError::Internal("the version query returned no row".into()))?;
        let mut parts = [0i64; 7];
        for (i, part) in parts.iter_mut().enumerate() {
            *part = row.try_get_by_index::<i64>(i)?;
        }
        Ok(format!(
            "p{}.{}-k{}-a{}-m{}.{}-b{}",
            parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6]
        ))
    }

    /// Everything the proxy needs, at `version` (read first, so a change during the
    /// read shows up as a newer version on the next poll, never as a lost one).
    pub async fn policy_snapshot(&self) -> Result<PolicySnapshot, CoreError> {
        let version = self.policy_version().await?;
        let now = self.clock.now();
        let db = self.store.db();
        let rows = projects::Entity::find()
            .find_also_related(project_sync::Entity)
            .order_by_asc(projects::Column::Id)
            .all(db)
            .await?;
        let mut projects = Vec::with_capacity(rows.len());
        for (row, sync) in rows {
            let project = super::projects::to_domain(row, Default::default(), sync)?;
            projects.push(SnapshotProject {
                id: project.id,
                name: project.name.to_string(),
                environment: project.environment,
                region: project.region,
                status: project.status,
                allowed_models: project.allowed_models,
                data_retention: project.data_retention,
                rate_limits: project.rate_limits,
                monthly_budget_usd: project.monthly_budget_usd.map(Budget::usd),
                mantle_project_id: project.aws.mantle_project_id,
                role_arn: project.aws.role_arn,
            });
        }
        let revoked_keys: Vec<Uuid> = api_keys::Entity::find()
            .select_only()
            .column(api_keys::Column::Id)
            .filter(api_keys::Column::RevokedAt.is_not_null())
            .filter(api_keys::Column::ExpiresAt.gt(now))
            .order_by_asc(api_keys::Column::Id)
            .into_tuple()
            .all(db)
            .await?;
        let models = self
            .list_models()
            .await?
            .into_iter()
            .map(|m| SnapshotModel {
                id: m.id,
                provider: m.provider,
                updated_at: m.updated_at.timestamp(),
                supports_chat: m.supports_chat,
                supports_responses: m.supports_responses,
                supports_messages: m.supports_messages,
                supports_streaming: m.supports_streaming,
                supports_multiple_choices: m.supports_multiple_choices,
                supports_logprobs: m.supports_logprobs,
                accepts_content_parts: m.accepts_content_parts,
                input_price_micros_per_mtok: m.input_price_per_mtok_usd.micros(),
                output_price_micros_per_mtok: m.output_price_per_mtok_usd.micros(),
                cached_input_price_micros_per_mtok: Some(
                    m.cached_input_price_per_mtok_usd.micros(),
                ),
                cache_write_price_micros_per_mtok: Some(m.cache_write_price_per_mtok_usd.micros()),
                service_tier_price_factors: m.service_tier_price_factors,
                mantle_path: m.mantle_path,
            })
            .collect();
        let budgets = self.snapshot_budgets().await?;
        Ok(PolicySnapshot {
            version,
            generated_at: now,
            projects,
            revoked_keys,
            models,
            budgets,
        })
    }
}
