//! Budgets at every level: stored, their current period's spend added up from the
//! proxy's metering, and their thresholds announced (once per budget, period and
//! threshold) by the notification pass.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, Statement,
};
use serde_json::json;
use uuid::Uuid;

use super::Services;
use super::audit::{Change, record, snapshot};
use super::budgets::MICROS_PER_CENT;
use super::cost_dashboard::sum;
use super::notifications::{Event, record_notification};
use crate::CoreError;
use crate::auth::Actor;
use crate::domain::{
    BudgetEnforcement, BudgetPatch, BudgetPeriod, BudgetScope, BudgetView, NewBudget,
    SnapshotBudget, micros_to_usd, thresholds_reached,
};
use crate::store::entities::{
    api_keys, budgets, project_tags, projects, usage_daily, usage_minutes,
};

/// A stored budget's scope, period and enforcement (text in the database).
fn kinds(
    row: &budgets::Model,
) -> Result<(BudgetScope, BudgetPeriod, BudgetEnforcement), CoreError> {
    let corrupt = |e: String| CoreError::Internal(format!("stored budget {}: {e}", row.id));
    Ok((
        BudgetScope::parse(&row.scope).map_err(corrupt)?,
        BudgetPeriod::parse(&row.period).map_err(corrupt)?,
        BudgetEnforcement::parse(&row.enforcement).map_err(corrupt)?,
    ))
}

/// Every write to a budget bumps this counter, which the policy version reads.
async fn bump_budget_revision<C: ConnectionTrait>(db: &C) -> Result<(), CoreError> {
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        "UPDATE change_counters SET value = value + 1 WHERE name = 'budgets'",
    ))
    .await?;
    Ok(())
}

/// The projects a project, team, environment or tag budget covers (archived ones
/// included: their past spend counts).
async fn scope_projects<C: ConnectionTrait>(
    db: &C,
    scope: BudgetScope,
    target: &str,
) -> Result<Vec<Uuid>, CoreError> {
    Ok(match scope {
        BudgetScope::Project => Uuid::parse_str(target).into_iter().collect(),
        BudgetScope::Team | BudgetScope::Environment => {
            let column = if scope == BudgetScope::Team {
                projects::Column::Team
            } else {
                projects::Column::Environment
            };
            projects::Entity::find()
                .select_only()
                .column(projects::Column::Id)
                .filter(column.eq(target))
                .order_by_asc(projects::Column::Id)
                .into_tuple()
                .all(db)
                .await?
        }
        BudgetScope::Tag => {
            let (key, value) = target.split_once('=').unwrap_or((target, ""));
            project_tags::Entity::find()
                .select_only()
                .column(project_tags::Column::ProjectId)
                .filter(project_tags::Column::Key.eq(key))
                .filter(project_tags::Column::Value.eq(value))
                .order_by_asc(project_tags::Column::ProjectId)
                .into_tuple()
                .all(db)
                .await?
        }
        BudgetScope::Key => Vec::new(),
    })
}

impl Services {
    pub async fn create_budget(
        &self,
        actor: &Actor,
        input: &NewBudget,
    ) -> Result<BudgetView, CoreError> {
        input.validate().map_err(CoreError::Validation)?;
        let target = input.target.trim().to_owned();
        let db = self.store.db();
        let exists = match input.scope {
            BudgetScope::Project => {
                projects::Entity::find_by_id(Uuid::parse_str(&target).unwrap_or_default())
                    .one(db)
                    .await?
                    .is_some()
            }
            BudgetScope::Key => {
                api_keys::Entity::find_by_id(Uuid::parse_str(&target).unwrap_or_default())
                    .one(db)
                    .await?
                    .is_some()
            }
            _ => true,
        };
        if !exists {
            return Err(CoreError::invalid(
                "target",
                format!("no {} '{target}'", input.scope),
            ));
        }
        let now = self.clock.now();
        let tx = self.store.begin_write().await?;
        let taken = budgets::Entity::find()
            .filter(budgets::Column::Name.eq(input.name.trim()))
            .one(&*tx)
            .await?;
        if taken.is_some() {
            return Err(CoreError::Conflict {
                code: "budget_name_taken",
                message: format!("a budget named '{}' exists", input.name.trim()),
            });
        }
        let row = budgets::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(input.name.trim().to_owned()),
            scope: Set(input.scope.as_str().into()),
            target: Set(target),
            period: Set(input.period.as_str().into()),
            amount_cents: Set((input.amount_usd * 100.0).round() as i64),
            enforcement: Set(input.enforcement.as_str().into()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&*tx)
        .await?;
        let view = self.budget_view(&row, now).await?;
        let change = Change {
            action: "budget.create",
            target_type: "budget",
            target_id: row.id.to_string(),
            before: None,
            after: snapshot(&view),
        };
        record(&*tx, actor, now, change).await?;
        bump_budget_revision(&*tx).await?;
        tx.commit().await?;
        Ok(view)
    }

    pub async fn list_budgets(&self) -> Result<Vec<BudgetView>, CoreError> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for row in budgets::Entity::find()
            .order_by_asc(budgets::Column::Name)
            .all(self.store.db())
            .await?
        {
            out.push(self.budget_view(&row, now).await?);
        }
        Ok(out)
    }

    pub async fn update_budget(
        &self,
        actor: &Actor,
        id: Uuid,
        patch: &BudgetPatch,
    ) -> Result<BudgetView, CoreError> {
        patch.validate().map_err(CoreError::Validation)?;
        let now = self.clock.now();
        let tx = self.store.begin_write().await?;
        let row = budgets::Entity::find_by_id(id)
            .one(&*tx)
            .await?
            .ok_or_else(|| CoreError::NotFound {
                kind: "budget",
                id: id.to_string(),
            })?;
        let before = self.budget_view(&row, now).await?;
        let mut active: budgets::ActiveModel = row.into();
        if let Some(period) = patch.period {
            active.period = Set(period.as_str().into());
        }
        if let Some(amount) = patch.amount_usd {
            active.amount_cents = Set((amount * 100.0).round() as i64);
        }
        if let Some(enforcement) = patch.enforcement {
            active.enforcement = Set(enforcement.as_str().into());
        }
        active.updated_at = Set(now);
        let row = active.update(&*tx).await?;
        let view = self.budget_view(&row, now).await?;
        let change = Change {
            action: "budget.update",
            target_type: "budget",
            target_id: id.to_string(),
            before: snapshot(&before),
            after: snapshot(&view),
        };
        record(&*tx, actor, now, change).await?;
        bump_budget_revision(&*tx).await?;
        tx.commit().await?;
        Ok(view)
    }

    pub async fn delete_budget(&self, actor: &Actor, id: Uuid) -> Result<(), CoreError> {
        let tx = self.store.begin_write().await?;
        let row = budgets::Entity::find_by_id(id)
            .one(&*tx)
            .await?
            .ok_or_else(|| CoreError::NotFound {
                kind: "budget",
                id: id.to_string(),
            })?;
        budgets::Entity::delete_by_id(id).exec(&*tx).await?;
        let change = Change {
            action: "budget.delete",
            target_type: "budget",
            target_id: id.to_string(),
            before: Some(json!({"name": row.name, "scope": row.scope, "target": row.target})),
            after: None,
        };
        record(&*tx, actor, self.clock.now(), change).await?;
        bump_budget_revision(&*tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn budget_view(
        &self,
        row: &budgets::Model,
        now: DateTime<Utc>,
    ) -> Result<BudgetView, CoreError> {
        let (scope, period, enforcement) = kinds(row)?;
        let (start, end) = period.bounds(now.date_naive());
        let spent = self.budget_spend(scope, &row.target, start, end).await?;
        let budget = row.amount_cents.saturating_mul(MICROS_PER_CENT);
        Ok(BudgetView {
            id: row.id,
            name: row.name.clone(),
            scope,
            target: row.target.clone(),
            period,
            amount_usd: row.amount_cents as f64 / 100.0,
            enforcement,
            period_start: start,
            period_end: end,
            spent_usd: micros_to_usd(spent),
            percent_used: if budget > 0 {
                spent as f64 * 100.0 / budget as f64
            } else {
                100.0
            },
            created_at: row.created_at,
        })
    }

    /// Metered spend of a budget's scope on the days `[start, end)`, in micro-dollars.
    async fn budget_spend(
        &self,
        scope: BudgetScope,
        target: &str,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<i64, CoreError> {
        let db = self.store.db();
        if scope == BudgetScope::Key {
            let key = Uuid::parse_str(target).unwrap_or_default();
            let at = |d: NaiveDate| d.and_time(NaiveTime::MIN).and_utc();
            let total: Option<Option<i64>> = usage_minutes::Entity::find()
                .select_only()
                .expr(sum(Expr::col(usage_minutes::Column::CostMicros)))
                .filter(usage_minutes::Column::KeyId.eq(key))
                .filter(usage_minutes::Column::Minute.gte(at(start)))
                .filter(usage_minutes::Column::Minute.lt(at(end)))
                .into_tuple()
                .one(db)
                .await?;
            return Ok(total.flatten().unwrap_or(0));
        }
        let projects = scope_projects(db, scope, target).await?;
        if projects.is_empty() {
            return Ok(0);
        }
        let total: Option<Option<i64>> = usage_daily::Entity::find()
            .select_only()
            .expr(sum(Expr::col(usage_daily::Column::CostMicros)))
            .filter(usage_daily::Column::ProjectId.is_in(projects))
            .filter(usage_daily::Column::Day.gte(start))
            .filter(usage_daily::Column::Day.lt(end))
            .into_tuple()
            .one(db)
            .await?;
        Ok(total.flatten().unwrap_or(0))
    }

    /// A budget's metered spend in the period holding `day`: where the proxy's
    /// counter for a hard budget starts. Returns the period's first day and
    /// micro-dollars.
    pub async fn budget_period_spend(
        &self,
        id: Uuid,
        day: NaiveDate,
    ) -> Result<(NaiveDate, i64), CoreError> {
        let row = budgets::Entity::find_by_id(id)
            .one(self.store.db())
            .await?
            .ok_or_else(|| CoreError::NotFound {
                kind: "budget",
                id: id.to_string(),
            })?;
        let (scope, period, _) = kinds(&row)?;
        let (start, end) = period.bounds(day);
        Ok((
            start,
            self.budget_spend(scope, &row.target, start, end).await?,
        ))
    }

    /// The hard budgets as the proxy enforces them, each with the projects it covers.
    pub(super) async fn snapshot_budgets(&self) -> Result<Vec<SnapshotBudget>, CoreError> {
        let db = self.store.db();
        let rows = budgets::Entity::find()
            .filter(budgets::Column::Enforcement.eq(BudgetEnforcement::Hard.as_str()))
            .order_by_asc(budgets::Column::Id)
            .all(db)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let (scope, period, _) = kinds(&row)?;
            let (projects, key) = if scope == BudgetScope::Key {
                (Vec::new(), Uuid::parse_str(&row.target).ok())
            } else {
                (scope_projects(db, scope, &row.target).await?, None)
            };
            out.push(SnapshotBudget {
                id: row.id,
                name: row.name,
                scope,
                target: row.target,
                period,
                amount_micros: row.amount_cents.saturating_mul(MICROS_PER_CENT),
                projects,
                key,
            });
        }
        Ok(out)
    }

    /// Records each budget's thresholds reached in its current period (once each).
    pub(super) async fn announce_budget_thresholds(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(), CoreError> {
        for view in self.list_budgets().await? {
            let budget = (view.amount_usd * 1e6).round() as i64;
            let spent = (view.spent_usd * 1e6).round() as i64;
            for threshold in thresholds_reached(spent, budget) {
                let event = Event {
                    kind: "budget.threshold",
                    dedupe_key: format!("budget:{}:{}:{threshold}", view.id, view.period_start),
                    environment: (view.scope == BudgetScope::Environment)
                        .then(|| view.target.clone()),
                    summary: format!(
                        "Budget '{}' ({} {}, per {}) has used {threshold} %: ${:.2} of ${:.2} since {}",
                        view.name,
                        view.scope,
                        view.target,
                        view.period,
                        view.spent_usd,
                        view.amount_usd,
                        view.period_start
                    ),
                    payload: json!({"budget_id": view.id, "budget_name": view.name,
                        "scope": view.scope, "target": view.target, "period": view.period,
                        "period_start": view.period_start, "threshold_percent": threshold,
                        "spent_usd": view.spent_usd, "budget_usd": view.amount_usd}),
                };
                record_notification(self.store.db(), event, now).await?;
            }
            if let Some(forecast) = forecast_micros(&view, now)
                && spent < budget
                && forecast > budget
            {
                let event = Event {
                    kind: "budget.forecast",
                    dedupe_key: format!("budget.forecast:budget:{}:{}", view.id, view.period_start),
                    environment: (view.scope == BudgetScope::Environment)
                        .then(|| view.target.clone()),
                    summary: format!(
                        "Budget '{}' ({} {}, per {}) is on course to be exceeded: ${:.2} spent, ${:.2} forecast, ${:.2} budget for the {} from {}",
                        view.name,
                        view.scope,
                        view.target,
                        view.period,
                        view.spent_usd,
                        micros_to_usd(forecast),
                        view.amount_usd,
                        view.period,
                        view.period_start
                    ),
                    payload: json!({"budget_id": view.id, "budget_name": view.name,
                        "scope": view.scope, "target": view.target, "period": view.period,
                        "period_start": view.period_start, "spent_usd": view.spent_usd,
                        "forecast_usd": micros_to_usd(forecast), "budget_usd": view.amount_usd}),
                };
                record_notification(self.store.db(), event, now).await?;
            }
        }
        Ok(())
    }
}

/// The budget's spend so far projected linearly to the end of its period, once a
/// quarter of the period (at most a day) has passed: earlier, a burst would forecast
/// wildly.
fn forecast_micros(view: &BudgetView, now: DateTime<Utc>) -> Option<i64> {
    let start = view.period_start.and_time(NaiveTime::MIN).and_utc();
    let end = view.period_end.and_time(NaiveTime::MIN).and_utc();
    let length = (end - start).num_seconds() as f64;
    let elapsed = (now - start).num_seconds() as f64;
    let enough = (length / 4.0).min(86_400.0);
    if elapsed < enough || elapsed <= 0.0 || length <= 0.0 {
        return None;
    }
    let spent = view.spent_usd * 1e6;
    Some((spent * length / elapsed).round() as i64)
}
