//! Monthly budgets against metered spend: what the proxy starts its budget counter
//! from, the status the API shows, and the threshold events recorded as usage arrives.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Months, NaiveDate, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::Services;
use super::cost_dashboard::sum;
use super::notifications::{Event, record_notification};
use crate::CoreError;
use crate::domain::{
    BudgetEvent, BudgetStatus, micros_to_usd, month_start, next_month_start, thresholds_reached,
};
use crate::store::entities::{budget_events, projects, usage_daily};

/// Micro-dollars in a cent.
pub(super) const MICROS_PER_CENT: i64 = 10_000;

/// Metered spend of each of `projects` in the UTC month that starts on `month`.
pub(super) async fn month_spends<C: ConnectionTrait>(
    db: &C,
    projects: &[Uuid],
    month: NaiveDate,
) -> Result<HashMap<Uuid, i64>, CoreError> {
    let rows: Vec<(Uuid, Option<i64>)> = usage_daily::Entity::find()
        .select_only()
        .column(usage_daily::Column::ProjectId)
        .expr(sum(Expr::col(usage_daily::Column::CostMicros)))
        .filter(usage_daily::Column::ProjectId.is_in(projects.iter().copied()))
        .filter(usage_daily::Column::Day.gte(month))
        .filter(usage_daily::Column::Day.lt(next_month_start(month)))
        .group_by(usage_daily::Column::ProjectId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(p, s)| (p, s.unwrap_or(0))).collect())
}

impl Services {
    /// A project's metered spend in the UTC month of `day`: where the proxy's budget
    /// counter starts. Returns the month (its first day) and micro-dollars.
    pub async fn month_spend(
        &self,
        project_id: Uuid,
        day: NaiveDate,
    ) -> Result<(NaiveDate, i64), CoreError> {
        let month = month_start(day);
        let spends = month_spends(self.store.db(), &[project_id], month).await?;
        Ok((month, spends.get(&project_id).copied().unwrap_or(0)))
    }

    /// The project's budget, this month's metered spend and its threshold events.
    pub async fn budget_status(&self, project_id: Uuid) -> Result<BudgetStatus, CoreError> {
        let project = self.get_project(project_id).await?;
        let now = self.clock.now();
        let (month, spent_micros) = self.month_spend(project_id, now.date_naive()).await?;
        let since = month.checked_sub_months(Months::new(11)).unwrap_or(month);
        let events = budget_events::Entity::find()
            .filter(budget_events::Column::ProjectId.eq(project_id))
            .filter(budget_events::Column::Month.gte(since))
            .order_by_desc(budget_events::Column::Month)
            .order_by_asc(budget_events::Column::ThresholdPercent)
            .all(self.store.db())
            .await?
            .into_iter()
            .map(|e| BudgetEvent {
                month: e.month,
                threshold_percent: e.threshold_percent,
                spent_usd: micros_to_usd(e.spent_micros),
                budget_usd: micros_to_usd(e.budget_micros),
                recorded_at: e.recorded_at,
            })
            .collect();
        let budget = project.monthly_budget_usd;
        Ok(BudgetStatus {
            month,
            monthly_budget_usd: budget.map(|b| b.usd()),
            spent_usd: micros_to_usd(spent_micros),
            spent_micros,
            percent_used: budget.map(|b| {
                let budget_micros = b.cents().saturating_mul(MICROS_PER_CENT);
                if budget_micros == 0 {
                    100.0
                } else {
                    spent_micros as f64 * 100.0 / budget_micros as f64
                }
            }),
            events,
        })
    }

    /// Records the budget thresholds that the spend of `touched` (project, month)
    /// pairs has reached, once each: called in the transaction that adds the usage,
    /// so every replica agrees and a crossing is never recorded twice.
    pub(super) async fn record_budget_crossings<C: ConnectionTrait>(
        db: &C,
        touched: &BTreeSet<(Uuid, NaiveDate)>,
        now: DateTime<Utc>,
    ) -> Result<(), CoreError> {
        let ids: BTreeSet<Uuid> = touched.iter().map(|(p, _)| *p).collect();
        let budgets: HashMap<Uuid, i64> = projects::Entity::find()
            .select_only()
            .column(projects::Column::Id)
            .column(projects::Column::MonthlyBudgetCents)
            .filter(projects::Column::Id.is_in(ids))
            .filter(projects::Column::MonthlyBudgetCents.is_not_null())
            .into_tuple::<(Uuid, Option<i64>)>()
            .all(db)
            .await?
            .into_iter()
            .filter_map(|(id, cents)| Some((id, cents?.saturating_mul(MICROS_PER_CENT))))
            .collect();
        let months: BTreeSet<NaiveDate> = touched.iter().map(|(_, m)| *m).collect();
        let mut events = Vec::new();
        for month in months {
            let projects: Vec<Uuid> = touched
                .iter()
                .filter(|(p, m)| *m == month && budgets.contains_key(p))
                .map(|(p, _)| *p)
                .collect();
            if projects.is_empty() {
                continue;
            }
            let spends = month_spends(db, &projects, month).await?;
            for project in projects {
                let budget = budgets.get(&project).copied().unwrap_or(0);
                let spent = spends.get(&project).copied().unwrap_or(0);
                for threshold in thresholds_reached(spent, budget) {
                    events.push(budget_events::ActiveModel {
                        project_id: Set(project),
                        month: Set(month),
                        threshold_percent: Set(threshold),
                        spent_micros: Set(spent),
                        budget_micros: Set(budget),
                        recorded_at: Set(now),
                    });
                }
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        // Each crossing is also a notification (recorded once by its key).
        let names: HashMap<Uuid, (String, String)> = projects::Entity::find()
            .select_only()
            .columns([
                projects::Column::Id,
                projects::Column::Name,
                projects::Column::Environment,
            ])
            .filter(
                projects::Column::Id.is_in(
                    events
                        .iter()
                        .filter_map(|e| e.project_id.try_as_ref().copied()),
                ),
            )
            .into_tuple::<(Uuid, String, String)>()
            .all(db)
            .await?
            .into_iter()
            .map(|(id, name, env)| (id, (name, env)))
            .collect();
        for event in &events {
            let (Some(project), Some(month), Some(threshold), Some(spent), Some(budget)) = (
                event.project_id.try_as_ref().copied(),
                event.month.try_as_ref().copied(),
                event.threshold_percent.try_as_ref().copied(),
                event.spent_micros.try_as_ref().copied(),
                event.budget_micros.try_as_ref().copied(),
            ) else {
                continue;
            };
            let (name, environment) = names.get(&project).cloned().unwrap_or_default();
            let notification = Event {
                kind: "budget.threshold",
                dedupe_key: format!("budget.threshold:{project}:{month}:{threshold}"),
                environment: Some(environment.clone()),
                summary: format!(
                    "{name} ({environment}) has used {threshold} % of its monthly budget: ${:.2} of ${:.2} in {}",
                    micros_to_usd(spent),
                    micros_to_usd(budget),
                    month.format("%B %Y")
                ),
                payload: serde_json::json!({
                    "project_id": project, "project_name": name, "environment": environment,
                    "month": month, "threshold_percent": threshold,
                    "spent_usd": micros_to_usd(spent), "budget_usd": micros_to_usd(budget),
                }),
            };
            record_notification(db, notification, now).await?;
        }
        budget_events::Entity::insert_many(events)
            .on_conflict(
                OnConflict::columns([
                    budget_events::Column::ProjectId,
                    budget_events::Column::Month,
                    budget_events::Column::ThresholdPercent,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
        Ok(())
    }
}
