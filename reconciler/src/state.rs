//! What the reconciler reads from and writes to the database: due projects, the
//! outcome of a pass (AWS ids, conditions, next attempt), the Mantle create marker.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use strata_core::domain::{Condition, Project, ProjectStatus, set_condition};
use strata_core::services::Services;
use strata_core::store::entities::{project_sync, projects};
use uuid::Uuid;

use crate::Reconciler;
use crate::error::ReconcileError;
use crate::project::ProjectOutcome;

/// A project with the reconciler's bookkeeping.
pub struct Claimed {
    pub project: Project,
    pub pending: bool,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
}

/// Projects whose next look is due, oldest first.
pub async fn due(r: &Reconciler, limit: u64) -> Result<Vec<Uuid>, ReconcileError> {
    let now = r.clock.now();
    project_sync::Entity::find()
        .select_only()
        .column(project_sync::Column::ProjectId)
        .filter(project_sync::Column::NextAttemptAt.lte(now))
        .filter(project_sync::Column::CleanedUp.eq(false))
        .order_by_asc(project_sync::Column::NextAttemptAt)
        .limit(limit)
        .into_tuple()
        .all(r.store.db())
        .await
        .map_err(ReconcileError::from)
}

/// How many projects are due now (the queue depth).
pub async fn due_count(r: &Reconciler) -> Result<u64, ReconcileError> {
    project_sync::Entity::find()
        .filter(project_sync::Column::NextAttemptAt.lte(r.clock.now()))
        .filter(project_sync::Column::CleanedUp.eq(false))
        .count(r.store.db())
        .await
        .map_err(ReconcileError::from)
}

pub async fn load(r: &Reconciler, id: Uuid) -> Result<Option<Claimed>, ReconcileError> {
    let Some(sync) = project_sync::Entity::find_by_id(id)
        .one(r.store.db())
        .await?
    else {
        return Ok(None);
    };
    let services = Services::new(r.store.clone(), r.clock.clone());
    let project = services.get_project(id).await?;
    Ok(Some(Claimed {
        project,
        pending: sync.mantle_pending,
        attempts: sync.attempts,
        next_attempt_at: sync.next_attempt_at,
    }))
}

pub async fn mark_mantle_pending(r: &Reconciler, id: Uuid) -> Result<(), ReconcileError> {
    project_sync::Entity::update_many()
        .col_expr(project_sync::Column::MantlePending, Expr::value(true))
        .filter(project_sync::Column::ProjectId.eq(id))
        .exec(r.store.db())
        .await
        .map(|_| ())
        .map_err(ReconcileError::from)
}

/// Exponential backoff with ±20 % jitter: 2 s, 4 s, 8 s … up to `max`.
pub fn backoff(attempts: i32, max: Duration) -> Duration {
    let exp = 2u64.saturating_pow(u32::try_from(attempts.clamp(1, 20)).unwrap_or(1));
    let base = Duration::from_secs(exp).min(max);
    let mut byte = [0u8; 1];
    let jitter = if getrandom::fill(&mut byte).is_ok() {
        0.8 + f64::from(byte[0]) / 255.0 * 0.4
    } else {
        1.0
    };
    base.mul_f64(jitter)
}

/// Records a pass: AWS ids, conditions (keeping transition times), the next look,
/// and `observed_generation` when AWS matches. A change made through the API
/// during the pass keeps the project due.
pub async fn record(
    r: &Reconciler,
    claimed: &Claimed,
    outcome: &ProjectOutcome,
) -> Result<DateTime<Utc>, ReconcileError> {
    let now = r.clock.now();
    let project = &claimed.project;
    let tx = r.store.begin_write().await?;
    let current = projects::Entity::find_by_id(project.id).one(&*tx).await?;
    let changed_meanwhile = current
        .as_ref()
        .is_some_and(|p| p.generation != project.generation);
    let attempts = if outcome.failure.is_some() {
        claimed.attempts.saturating_add(1)
    } else {
        0
    };
    let wait = match &outcome.failure {
        None => Duration::from_secs(r.config.resync_secs),
        Some(f) if f.retryable => backoff(attempts, Duration::from_secs(r.config.max_backoff_secs)),
        // Needs a person: look again at the slow pace.
        Some(_) => Duration::from_secs(
            r.config
                .max_backoff_secs
                .max(r.config.resync_secs.min(3600)),
        ),
    };
    let next = if changed_meanwhile {
        now
    } else {
        now + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::seconds(600))
    };
    let mut conditions: Vec<Condition> = project.conditions.clone();
    if project.status == ProjectStatus::Archived {
        conditions.clear();
    }
    for (kind, status, reason, mut message) in outcome.conditions.clone() {
        if outcome.failure.is_some() && status != strata_core::domain::ConditionStatus::True {
            message = format!(
                "{message} (next try at {})",
                next.format("%Y-%m-%dT%H:%M:%SZ")
            );
        }
        set_condition(
            &mut conditions,
            Condition {
                kind,
                status,
                reason,
                message,
                last_transition_time: now,
                observed_generation: project.generation,
            },
        );
    }
    let conditions = serde_json::to_value(&conditions)?;
    // The marker set before a Mantle create stays until an id is recorded: a create
    // that failed may still have made the project.
    let pending = if outcome.aws.mantle_project_id.is_some() {
        Expr::value(false)
    } else {
        Expr::col(project_sync::Column::MantlePending)
    };
    project_sync::Entity::update_many()
        .col_expr(
            project_sync::Column::MantleProjectId,
            Expr::value(outcome.aws.mantle_project_id.clone()),
        )
        .col_expr(
            project_sync::Column::MantleProjectArn,
            Expr::value(outcome.aws.mantle_project_arn.clone()),
        )
        .col_expr(
            project_sync::Column::RoleArn,
            Expr::value(outcome.aws.role_arn.clone()),
        )
        .col_expr(project_sync::Column::MantlePending, pending)
        .col_expr(project_sync::Column::Conditions, Expr::value(conditions))
        .col_expr(project_sync::Column::NextAttemptAt, Expr::value(next))
        .col_expr(project_sync::Column::Attempts, Expr::value(attempts))
        .col_expr(
            project_sync::Column::CleanedUp,
            Expr::value(outcome.cleaned_up && !changed_meanwhile),
        )
        .col_expr(project_sync::Column::UpdatedAt, Expr::value(now))
        .filter(project_sync::Column::ProjectId.eq(project.id))
        .exec(&*tx)
        .await?;
    // Changes made to a project AWS had in sync with its specification: someone
    // changed it outside strata, and the pass put it back.
    let was_in_sync = current
        .as_ref()
        .is_some_and(|p| p.observed_generation == project.generation);
    if was_in_sync && !outcome.changes.is_empty() && project.status != ProjectStatus::Archived {
        let what: Vec<String> = outcome
            .changes
            .iter()
            .map(|c| format!("{} ({})", c.resource, c.summary))
            .collect();
        let event = strata_core::services::Event {
            kind: "drift.repaired",
            dedupe_key: format!("drift.repaired:{}:{}", project.id, now.timestamp_millis()),
            environment: Some(project.environment.as_str().to_owned()),
            summary: format!(
                "{} ({}): changes made on AWS outside strata were put back: {}",
                project.name.as_str(),
                project.environment.as_str(),
                what.join("; ")
            ),
            payload: serde_json::json!({
                "project_id": project.id, "project_name": project.name.as_str(),
                "environment": project.environment.as_str(), "changes": outcome.changes,
            }),
        };
        strata_core::services::record_notification(&*tx, event, now).await?;
    }
    if outcome.failure.is_none() {
        projects::Entity::update_many()
            .col_expr(
                projects::Column::ObservedGeneration,
                Expr::value(project.generation),
            )
            .filter(projects::Column::Id.eq(project.id))
            .filter(projects::Column::ObservedGeneration.lt(project.generation))
            .exec(&*tx)
            .await?;
    }
    tx.commit().await?;
    Ok(next)
}

/// Live projects by the status of their `Ready` condition ("None" before the
/// first pass), for the `projects_by_condition` gauge.
pub async fn ready_counts(r: &Reconciler) -> Result<BTreeMap<String, i64>, ReconcileError> {
    let rows: Vec<serde_json::Value> = project_sync::Entity::find()
        .select_only()
        .column(project_sync::Column::Conditions)
        .filter(project_sync::Column::CleanedUp.eq(false))
        .into_tuple()
        .all(r.store.db())
        .await?;
    let mut counts: BTreeMap<String, i64> = ["True", "False", "Unknown", "None"]
        .iter()
        .map(|s| ((*s).to_owned(), 0))
        .collect();
    for value in rows {
        let conditions: Vec<Condition> = serde_json::from_value(value).unwrap_or_default();
        let status = conditions
            .iter()
            .find(|c| c.kind == strata_core::domain::ConditionType::Ready)
            .map_or("None".to_owned(), |c| format!("{:?}", c.status));
        *counts.entry(status).or_default() += 1;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let max = Duration::from_secs(300);
        let first = backoff(1, max);
        assert!(
            first >= Duration::from_millis(1600) && first <= Duration::from_millis(2400),
            "{first:?}"
        );
        let fifth = backoff(5, max);
        assert!(
            fifth >= Duration::from_millis(25_600) && fifth <= Duration::from_millis(38_400),
            "{fifth:?}"
        );
        assert!(backoff(30, max) <= Duration::from_secs(360));
    }
}
