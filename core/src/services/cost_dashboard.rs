//! An environment's cost page, summed by the database: page views read only stored
//! figures (never Cost Explorer), and a year of a thousand projects is a few
//! aggregate queries, not hundreds of thousands of rows shipped to Rust.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Months, NaiveDate, Utc};
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Func, OnConflict, Query, SimpleExpr};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use uuid::Uuid;

use super::Services;
use super::costs::cost_range;
use crate::CoreError;
use crate::domain::{
    CHART_PROJECTS, ChartSeries, CostDashboard, CostGroupBy, DayCost, Environment, MonthEnd,
    PROJECT_TAG, ProjectCost, SeriesKind, StoredForecast, TagBreakdown, TagSpend, linear_month_end,
    month_start, next_month_start,
};
use crate::store::entities::{cost_coverage, cost_daily, cost_forecasts, projects, usage_daily};

/// `SUM(expr)` as a 64-bit integer on every backend (Postgres sums BIGINT as NUMERIC).
pub(super) fn sum(expr: impl Into<Expr>) -> SimpleExpr {
    Func::cast_as(Func::sum(expr.into()), Alias::new("BIGINT")).into()
}

/// `cost_daily` rows of one tag key and environment on the days `[from, to)`.
fn cost_days(tag_key: &str, environment: &str, from: NaiveDate, to: NaiveDate) -> Condition {
    Condition::all()
        .add(Expr::col(cost_daily::Column::TagKey).eq(tag_key))
        .add(Expr::col(cost_daily::Column::Environment).eq(environment))
        .add(Expr::col(cost_daily::Column::Day).gte(from))
        .add(Expr::col(cost_daily::Column::Day).lt(to))
}

/// `amount_micros` on the days `[from, to)`, else 0.
fn amount_between(from: NaiveDate, to: NaiveDate) -> SimpleExpr {
    Expr::case(
        Expr::col(cost_daily::Column::Day)
            .gte(from)
            .and(Expr::col(cost_daily::Column::Day).lt(to)),
        Expr::col(cost_daily::Column::AmountMicros),
    )
    .finally(0i64)
    .into()
}

/// A project of the environment, as the cost page names it.
struct KnownProject {
    id: Uuid,
    name: String,
    team: String,
    /// `None` without a budget, or once archived.
    budget_micros: Option<i64>,
    archived: bool,
}

/// The ids of an environment's projects, as a subquery.
fn in_environment(environment: &str) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(projects::Column::Id)
        .from(projects::Entity)
        .and_where(Expr::col(projects::Column::Environment).eq(environment))
        .to_owned()
}

impl Services {
    /// Keeps Cost Explorer's forecast for an environment (or why it gave none).
    pub async fn store_cost_forecast(
        &self,
        environment: &str,
        period: (NaiveDate, NaiveDate),
        outcome: Result<(i64, String), String>,
    ) -> Result<(), CoreError> {
        let (amount, unit, error) = match outcome {
            Ok((micros, unit)) => (Some(micros), Some(unit), None),
            // The column holds 512 characters; AWS messages are shorter, but be sure.
            Err(e) => (None, None, Some(e.chars().take(500).collect::<String>())),
        };
        cost_forecasts::Entity::insert(cost_forecasts::ActiveModel {
            environment: Set(environment.to_owned()),
            period_start: Set(period.0),
            period_end: Set(period.1),
            amount_micros: Set(amount),
            unit: Set(unit),
            error: Set(error),
            fetched_at: Set(self.clock.now()),
        })
        .on_conflict(
            OnConflict::column(cost_forecasts::Column::Environment)
                .update_columns([
                    cost_forecasts::Column::PeriodStart,
                    cost_forecasts::Column::PeriodEnd,
                    cost_forecasts::Column::AmountMicros,
                    cost_forecasts::Column::Unit,
                    cost_forecasts::Column::Error,
                    cost_forecasts::Column::FetchedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(self.store.db())
        .await?;
        Ok(())
    }

    pub async fn cost_forecast(
        &self,
        environment: &str,
    ) -> Result<Option<StoredForecast>, CoreError> {
        Ok(cost_forecasts::Entity::find_by_id(environment.to_owned())
            .one(self.store.db())
            .await?
            .map(|f| StoredForecast {
                period_start: f.period_start,
                period_end: f.period_end,
                outcome: match (f.amount_micros, f.error) {
                    (Some(micros), _) => Ok(micros),
                    (None, error) => Err(error.unwrap_or_default()),
                },
                fetched_at: f.fetched_at,
            }))
    }

    /// Environments with project cost on or after `since` (the ones worth a forecast).
    pub async fn cost_environments_since(
        &self,
        since: NaiveDate,
    ) -> Result<Vec<String>, CoreError> {
        let rows: Vec<String> = cost_daily::Entity::find()
            .select_only()
            .column(cost_daily::Column::Environment)
            .distinct()
            .filter(cost_daily::Column::TagKey.eq(PROJECT_TAG))
            .filter(cost_daily::Column::Day.gte(since))
            .filter(cost_daily::Column::Environment.ne(""))
            .into_tuple()
            .all(self.store.db())
            .await?;
        Ok(rows)
    }

    /// Everything an environment's cost page shows, for the days `[from, to)`
    /// (default: this month so far) and, for `group_by=tag:<key>`, that key's
    /// breakdown.
    pub async fn cost_dashboard(
        &self,
        environment: Environment,
        group_by: &CostGroupBy,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<CostDashboard, CoreError> {
        let now = self.clock.now();
        let today = now.date_naive();
        let (from, to) = cost_range(today, from, to)?;
        let env = environment.as_str();
        let tomorrow = today + chrono::Duration::days(1);
        let this_month = month_start(today);
        let last_month = this_month
            .checked_sub_months(Months::new(1))
            .unwrap_or(this_month);
        // The same days of last month, for the trend (capped at its end).
        let last_month_same = std::cmp::min(last_month + (tomorrow - this_month), this_month);
        let day_lo = std::cmp::min(from, this_month);
        let hi = std::cmp::max(to, tomorrow);
        let breakdown_key = match group_by {
            CostGroupBy::Tag(key) => Some(key.as_str()),
            CostGroupBy::Project | CostGroupBy::Environment => None,
        };

        // Independent reads, at once (each is one indexed aggregate). Last month's
        // days are summed apart: two scans of a month each, side by side, are quicker
        // than one scan of both months.
        let (
            sums,
            last_sums,
            actual_by_day,
            known,
            estimate_by_day,
            tag_keys,
            forecast,
            last_refresh,
            breakdown,
        ) = tokio::try_join!(
            self.project_sums(env, [(from, to), (this_month, tomorrow)]),
            self.project_sums(env, [(last_month, last_month_same)]),
            self.day_totals(env, day_lo, hi),
            self.known_projects(env),
            self.metered_by_day(env, day_lo, hi),
            self.cost_tag_keys(),
            self.cost_forecast(env),
            self.last_cost_refresh(),
            async {
                match breakdown_key {
                    Some(key) => Ok(Some(TagBreakdown {
                        key: key.to_owned(),
                        values: self.tag_spend(env, key, from, to).await?,
                    })),
                    None => Ok::<_, CoreError>(None),
                }
            },
        )?;

        // The proxy's metered cost per project on this month's days Cost Explorer has
        // not reported (there it stands in for the actuals).
        let mut unreported: Vec<NaiveDate> = Vec::new();
        let mut d = this_month;
        while d < tomorrow {
            if !actual_by_day.contains_key(&d) {
                unreported.push(d);
            }
            d += chrono::Duration::days(1);
        }
        let estimated_by_project = self.metered_by_project(env, &unreported).await?;

        let by_id: HashMap<Uuid, &KnownProject> = known.iter().map(|p| (p.id, p)).collect();
        let mut untagged_micros = 0;
        let mut range_micros = 0;
        let mut seen: BTreeSet<Uuid> = BTreeSet::new();
        let mut project_costs: Vec<ProjectCost> = Vec::new();
        // A value with cost only last month still shows (with nothing this month).
        let mut sums: HashMap<String, [i64; 3]> = sums
            .into_iter()
            .map(|(value, [in_range, month])| (value, [in_range, month, 0]))
            .collect();
        for (value, [last]) in last_sums {
            sums.entry(value).or_default()[2] = last;
        }
        for (value, [in_range, month, last]) in sums {
            range_micros += in_range;
            if value.is_empty() {
                untagged_micros += in_range;
                continue;
            }
            let project = Uuid::parse_str(&value).ok().and_then(|id| by_id.get(&id));
            if let Some(p) = project {
                seen.insert(p.id);
            }
            let estimated = project
                .and_then(|p| estimated_by_project.get(&p.id))
                .copied()
                .unwrap_or(0);
            project_costs.push(ProjectCost {
                id: project.map(|p| p.id),
                name: project.map_or_else(|| value.clone(), |p| p.name.clone()),
                team: project.map(|p| p.team.clone()),
                range_micros: in_range,
                month_micros: month + estimated,
                last_month_micros: last,
                budget_micros: project.and_then(|p| p.budget_micros),
            });
        }
        // Live projects without cost are listed too (an archived one only if it
        // cost something).
        for p in known
            .iter()
            .filter(|p| !seen.contains(&p.id) && !p.archived)
        {
            project_costs.push(ProjectCost {
                id: Some(p.id),
                name: p.name.clone(),
                team: Some(p.team.clone()),
                range_micros: 0,
                month_micros: estimated_by_project.get(&p.id).copied().unwrap_or(0),
                last_month_micros: 0,
                budget_micros: p.budget_micros,
            });
        }
        project_costs.sort_by(|a, b| {
            b.range_micros
                .cmp(&a.range_micros)
                .then_with(|| b.month_micros.cmp(&a.month_micros))
                .then_with(|| a.name.cmp(&b.name))
        });

        let month_actual_micros: i64 = actual_by_day
            .range(this_month..tomorrow)
            .map(|(_, (m, _))| m)
            .sum();
        let month_estimated_micros: i64 = unreported
            .iter()
            .filter_map(|d| estimate_by_day.get(d))
            .sum();
        let budgets: Vec<&ProjectCost> = project_costs
            .iter()
            .filter(|p| p.budget_micros.is_some())
            .collect();
        let budget_micros =
            (!budgets.is_empty()).then(|| budgets.iter().filter_map(|p| p.budget_micros).sum());
        let budgeted_month_micros = budgets.iter().map(|p| p.month_micros).sum();

        // The chart: the largest projects on the range, every other one, untagged.
        let top: Vec<&ProjectCost> = project_costs
            .iter()
            .filter(|p| p.range_micros > 0)
            .take(CHART_PROJECTS)
            .collect();
        let mut series: Vec<ChartSeries> = top
            .iter()
            .map(|p| ChartSeries {
                name: p.name.clone(),
                kind: SeriesKind::Project,
            })
            .collect();
        let top_values: Vec<String> = top
            .iter()
            .map(|p| p.id.map_or_else(|| p.name.clone(), |id| id.to_string()))
            .collect();
        let mut top_days: HashMap<(NaiveDate, String), i64> = HashMap::new();
        let mut untagged_days: HashMap<NaiveDate, i64> = HashMap::new();
        let mut wanted = top_values.clone();
        wanted.push(String::new());
        for (day, value, micros) in self.project_days(env, from, to, wanted).await? {
            if value.is_empty() {
                *untagged_days.entry(day).or_default() += micros;
            } else {
                *top_days.entry((day, value)).or_default() += micros;
            }
        }
        series.push(ChartSeries {
            name: "Other projects".into(),
            kind: SeriesKind::OtherProjects,
        });
        series.push(ChartSeries {
            name: "Untagged".into(),
            kind: SeriesKind::Untagged,
        });
        let mut days = Vec::new();
        let mut day = from;
        while day < to {
            let actual = actual_by_day.get(&day).copied();
            let mut by_series: Vec<i64> = top_values
                .iter()
                .map(|v| top_days.get(&(day, v.clone())).copied().unwrap_or(0))
                .collect();
            let untagged = untagged_days.get(&day).copied().unwrap_or(0);
            let other =
                actual.map_or(0, |(total, _)| total) - by_series.iter().sum::<i64>() - untagged;
            by_series.push(std::cmp::max(other, 0));
            by_series.push(untagged);
            days.push(DayCost {
                day,
                by_series,
                actual_micros: actual.map(|(total, _)| total),
                estimate_micros: estimate_by_day.get(&day).copied(),
                restatable: actual.is_some_and(|(_, r)| r),
            });
            day += chrono::Duration::days(1);
        }

        let month_to_date = month_actual_micros + month_estimated_micros;
        let month_end = match forecast {
            Some(f) if f.period_end == next_month_start(today) && f.period_start >= this_month => {
                match f.outcome {
                    Ok(forecast) => MonthEnd::Forecast {
                        amount_micros: actual_by_day
                            .range(this_month..f.period_start)
                            .map(|(_, (m, _))| m)
                            .sum::<i64>()
                            + forecast,
                    },
                    Err(reason) => MonthEnd::Linear {
                        amount_micros: linear_month_end(month_to_date, today),
                        reason: format!("Cost Explorer gave no forecast: {reason}"),
                    },
                }
            }
            _ => MonthEnd::Linear {
                amount_micros: linear_month_end(month_to_date, today),
                reason: "Cost Explorer has no forecast for this month yet (the next cost refresh asks for one)".into(),
            },
        };

        Ok(CostDashboard {
            environment,
            today,
            from,
            to,
            month_actual_micros,
            month_estimated_micros,
            month_end,
            budget_micros,
            budgeted_month_micros,
            range_micros,
            untagged_micros,
            projects: project_costs,
            series,
            days,
            breakdown,
            tag_keys,
            last_refresh,
        })
    }

    /// Per `strata:project` value, its spend on each of `ranges` (one scan of the
    /// days they cover together).
    async fn project_sums<const N: usize>(
        &self,
        environment: &str,
        ranges: [(NaiveDate, NaiveDate); N],
    ) -> Result<HashMap<String, [i64; N]>, CoreError> {
        let lo = ranges.iter().map(|r| r.0).min().unwrap_or(NaiveDate::MIN);
        let hi = ranges.iter().map(|r| r.1).max().unwrap_or(NaiveDate::MIN);
        let mut query = Query::select();
        query.column(cost_daily::Column::TagValue);
        for (i, (from, to)) in ranges.iter().enumerate() {
            query.expr_as(sum(amount_between(*from, *to)), Alias::new(format!("r{i}")));
        }
        query
            .cond_where(cost_days(PROJECT_TAG, environment, lo, hi))
            .from(cost_daily::Entity)
            .group_by_col(cost_daily::Column::TagValue);
        let mut out = HashMap::new();
        for row in self.store.db().query_all(&query).await? {
            let mut sums = [0i64; N];
            for (i, sum) in sums.iter_mut().enumerate() {
                *sum = row.try_get("", &format!("r{i}"))?;
            }
            out.insert(row.try_get("", "tag_value")?, sums);
        }
        Ok(out)
    }

    /// Per day on `[from, to)`: every project's cost together (untagged included) and
    /// whether Cost Explorer may still restate the day.
    async fn day_totals(
        &self,
        environment: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<BTreeMap<NaiveDate, (i64, bool)>, CoreError> {
        let query = Query::select()
            .column(cost_daily::Column::Day)
            .expr_as(
                sum(Expr::col(cost_daily::Column::AmountMicros)),
                Alias::new("total"),
            )
            .expr_as(
                sum(
                    Expr::case(Expr::col(cost_daily::Column::Estimated).eq(true), 1i64)
                        .finally(0i64),
                ),
                Alias::new("restatable"),
            )
            .cond_where(cost_days(PROJECT_TAG, environment, from, to))
            .from(cost_daily::Entity)
            .group_by_col(cost_daily::Column::Day)
            .to_owned();
        let mut out = BTreeMap::new();
        for row in self.store.db().query_all(&query).await? {
            let restatable: i64 = row.try_get("", "restatable")?;
            out.insert(
                row.try_get("", "day")?,
                (row.try_get("", "total")?, restatable > 0),
            );
        }
        Ok(out)
    }

    /// The environment's projects (names, teams, budgets), archived ones too: their
    /// cost still counts, their budget no longer does.
    async fn known_projects(&self, environment: &str) -> Result<Vec<KnownProject>, CoreError> {
        Ok(projects::Entity::find()
            .select_only()
            .columns([
                projects::Column::Id,
                projects::Column::Name,
                projects::Column::Team,
                projects::Column::MonthlyBudgetCents,
                projects::Column::ArchivedAt,
            ])
            .filter(projects::Column::Environment.eq(environment))
            .into_tuple::<(Uuid, String, String, Option<i64>, Option<DateTime<Utc>>)>()
            .all(self.store.db())
            .await?
            .into_iter()
            .map(|(id, name, team, budget_cents, archived_at)| KnownProject {
                id,
                name,
                team,
                budget_micros: budget_cents
                    .filter(|_| archived_at.is_none())
                    .map(|cents| cents.saturating_mul(10_000)),
                archived: archived_at.is_some(),
            })
            .collect())
    }

    /// The daily figures of some `strata:project` values on `[from, to)`.
    async fn project_days(
        &self,
        environment: &str,
        from: NaiveDate,
        to: NaiveDate,
        values: Vec<String>,
    ) -> Result<Vec<(NaiveDate, String, i64)>, CoreError> {
        Ok(cost_daily::Entity::find()
            .select_only()
            .columns([
                cost_daily::Column::Day,
                cost_daily::Column::TagValue,
                cost_daily::Column::AmountMicros,
            ])
            .filter(cost_days(PROJECT_TAG, environment, from, to))
            .filter(cost_daily::Column::TagValue.is_in(values))
            .into_tuple()
            .all(self.store.db())
            .await?)
    }

    /// Cost tag keys with stored figures besides `strata:project`.
    async fn cost_tag_keys(&self) -> Result<Vec<String>, CoreError> {
        Ok(cost_coverage::Entity::find()
            .select_only()
            .column(cost_coverage::Column::TagKey)
            .filter(cost_coverage::Column::TagKey.ne(PROJECT_TAG))
            .into_tuple()
            .all(self.store.db())
            .await?)
    }

    /// A tag key's spend per value on `[from, to)` in one environment, largest first.
    async fn tag_spend(
        &self,
        environment: &str,
        key: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<TagSpend>, CoreError> {
        let query = Query::select()
            .column(cost_daily::Column::TagValue)
            .expr_as(
                sum(Expr::col(cost_daily::Column::AmountMicros)),
                Alias::new("total"),
            )
            .cond_where(cost_days(key, environment, from, to))
            .from(cost_daily::Entity)
            .group_by_col(cost_daily::Column::TagValue)
            .to_owned();
        let mut out: Vec<TagSpend> = self
            .totals(&query, "tag_value")
            .await?
            .into_iter()
            .map(|(value, micros)| TagSpend { value, micros })
            .collect();
        out.sort_by(|a, b| b.micros.cmp(&a.micros).then_with(|| a.value.cmp(&b.value)));
        Ok(out)
    }

    /// Runs a grouped sum and reads each row's group (column `key`) and `total`.
    async fn totals<K: sea_orm::TryGetable>(
        &self,
        query: &sea_orm::sea_query::SelectStatement,
        key: &str,
    ) -> Result<Vec<(K, i64)>, CoreError> {
        let mut out = Vec::new();
        for row in self.store.db().query_all(query).await? {
            out.push((row.try_get("", key)?, row.try_get("", "total")?));
        }
        Ok(out)
    }

    /// The proxy's metered cost per UTC day on `[from, to)` for an environment's
    /// projects.
    async fn metered_by_day(
        &self,
        environment: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<BTreeMap<NaiveDate, i64>, CoreError> {
        let query = Query::select()
            .column(usage_daily::Column::Day)
            .expr_as(
                sum(Expr::col(usage_daily::Column::CostMicros)),
                Alias::new("total"),
            )
            .from(usage_daily::Entity)
            .and_where(
                Expr::col(usage_daily::Column::ProjectId).in_subquery(in_environment(environment)),
            )
            .and_where(Expr::col(usage_daily::Column::Day).gte(from))
            .and_where(Expr::col(usage_daily::Column::Day).lt(to))
            .group_by_col(usage_daily::Column::Day)
            .to_owned();
        Ok(self.totals(&query, "day").await?.into_iter().collect())
    }

    /// The proxy's metered cost per project of an environment on the given days.
    async fn metered_by_project(
        &self,
        environment: &str,
        days: &[NaiveDate],
    ) -> Result<HashMap<Uuid, i64>, CoreError> {
        if days.is_empty() {
            return Ok(HashMap::new());
        }
        let query = Query::select()
            .column(usage_daily::Column::ProjectId)
            .expr_as(
                sum(Expr::col(usage_daily::Column::CostMicros)),
                Alias::new("total"),
            )
            .from(usage_daily::Entity)
            .and_where(
                Expr::col(usage_daily::Column::ProjectId).in_subquery(in_environment(environment)),
            )
            .and_where(Expr::col(usage_daily::Column::Day).is_in(days.iter().copied()))
            .group_by_col(usage_daily::Column::ProjectId)
            .to_owned();
        Ok(self
            .totals(&query, "project_id")
            .await?
            .into_iter()
            .collect())
    }
}
