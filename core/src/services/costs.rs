//! Cost Explorer actuals: stored per day, environment and tag, replaced whole for the
//! days a refresh fetched again (Cost Explorer restates recent days, and a group can
//! vanish); the billed calls, counted against the daily budget.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use uuid::Uuid;

use super::Services;
use crate::CoreError;
use crate::domain::{
    CostDay, CostFigure, CostGroup, CostGroupBy, CostReport, Environment, micros_to_usd,
};
use crate::store::entities::{cost_coverage, cost_daily, cost_explorer_calls, projects};

/// Rows per insert statement (8 bind parameters each).
const INSERT_CHUNK: usize = 500;

impl Services {
    /// Billed Cost Explorer calls since midnight UTC.
    pub async fn cost_explorer_calls_today(&self) -> Result<u64, CoreError> {
        let midnight = self
            .clock
            .now()
            .date_naive()
            .and_time(NaiveTime::MIN)
            .and_utc();
        Ok(cost_explorer_calls::Entity::find()
            .filter(cost_explorer_calls::Column::At.gte(midnight))
            .count(self.store.db())
            .await?)
    }

    /// Records one billed Cost Explorer call, whether or not it succeeded.
    pub async fn record_cost_explorer_call(
        &self,
        operation: &str,
        ok: bool,
    ) -> Result<(), CoreError> {
        cost_explorer_calls::Entity::insert(cost_explorer_calls::ActiveModel {
            id: Set(Uuid::now_v7()),
            at: Set(self.clock.now()),
            operation: Set(operation.to_owned()),
            ok: Set(ok),
        })
        .exec_without_returning(self.store.db())
        .await?;
        Ok(())
    }

    /// When a refresh last stored figures for any key.
    pub async fn last_cost_refresh(&self) -> Result<Option<DateTime<Utc>>, CoreError> {
        use sea_orm::QueryOrder;
        Ok(cost_coverage::Entity::find()
            .order_by_desc(cost_coverage::Column::RefreshedAt)
            .one(self.store.db())
            .await?
            .map(|c| c.refreshed_at))
    }

    /// The days `[from, to)` fetched so far for `tag_key`, if any.
    pub async fn cost_coverage(
        &self,
        tag_key: &str,
    ) -> Result<Option<(NaiveDate, NaiveDate)>, CoreError> {
        Ok(cost_coverage::Entity::find_by_id(tag_key.to_owned())
            .one(self.store.db())
            .await?
            .map(|c| (c.fetched_from, c.fetched_to)))
    }

    /// Every project id strata has ever had (archived ones too): what a cost row's
    /// `strata:project` value must name to be attributed.
    pub async fn known_project_ids(&self) -> Result<std::collections::BTreeSet<Uuid>, CoreError> {
        use sea_orm::QuerySelect;
        Ok(projects::Entity::find()
            .select_only()
            .column(projects::Column::Id)
            .into_tuple::<Uuid>()
            .all(self.store.db())
            .await?
            .into_iter()
            .collect())
    }

    /// Replaces what is stored for `tag_key` on the days `[from, to)` with `figures`
    /// (one transaction) and widens the key's coverage to include those days.
    pub async fn replace_costs(
        &self,
        tag_key: &str,
        from: NaiveDate,
        to: NaiveDate,
        figures: &[CostFigure],
    ) -> Result<(), CoreError> {
        if let Some(f) = figures.iter().find(|f| f.day < from || f.day >= to) {
            return Err(CoreError::invalid(
                "day",
                format!("{} is outside the refreshed range {from} – {to}", f.day),
            ));
        }
        let now = self.clock.now();
        let tx = self.store.begin_write().await?;
        cost_daily::Entity::delete_many()
            .filter(cost_daily::Column::TagKey.eq(tag_key))
            .filter(cost_daily::Column::Day.gte(from))
            .filter(cost_daily::Column::Day.lt(to))
            .exec(&*tx)
            .await?;
        let rows: Vec<cost_daily::ActiveModel> = figures
            .iter()
            .map(|f| cost_daily::ActiveModel {
                tag_key: Set(tag_key.to_owned()),
                day: Set(f.day),
                environment: Set(f.environment.clone()),
                tag_value: Set(f.tag_value.clone()),
                amount_micros: Set(f.amount_micros),
                unit: Set(f.unit.clone()),
                estimated: Set(f.estimated),
                fetched_at: Set(now),
            })
            .collect();
        for chunk in rows.chunks(INSERT_CHUNK) {
            cost_daily::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&*tx)
                .await?;
        }
        let covered = cost_coverage::Entity::find_by_id(tag_key.to_owned())
            .one(&*tx)
            .await?;
        let (fetched_from, fetched_to) = match covered {
            Some(c) => (c.fetched_from.min(from), c.fetched_to.max(to)),
            None => (from, to),
        };
        cost_coverage::Entity::insert(cost_coverage::ActiveModel {
            tag_key: Set(tag_key.to_owned()),
            fetched_from: Set(fetched_from),
            fetched_to: Set(fetched_to),
            refreshed_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(cost_coverage::Column::TagKey)
                .update_columns([
                    cost_coverage::Column::FetchedFrom,
                    cost_coverage::Column::FetchedTo,
                    cost_coverage::Column::RefreshedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&*tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// What is stored for `tag_key` on the days `[from, to)`, by day, environment and
    /// value.
    pub async fn costs(
        &self,
        tag_key: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<CostFigure>, CoreError> {
        self.cost_rows(tag_key, from, to, None).await
    }

    async fn cost_rows(
        &self,
        tag_key: &str,
        from: NaiveDate,
        to: NaiveDate,
        environment: Option<&str>,
    ) -> Result<Vec<CostFigure>, CoreError> {
        use sea_orm::QueryOrder;
        let mut query = cost_daily::Entity::find()
            .filter(cost_daily::Column::TagKey.eq(tag_key))
            .filter(cost_daily::Column::Day.gte(from))
            .filter(cost_daily::Column::Day.lt(to));
        if let Some(environment) = environment {
            query = query.filter(cost_daily::Column::Environment.eq(environment));
        }
        Ok(query
            .order_by_asc(cost_daily::Column::Day)
            .order_by_asc(cost_daily::Column::Environment)
            .order_by_asc(cost_daily::Column::TagValue)
            .all(self.store.db())
            .await?
            .into_iter()
            .map(|r| CostFigure {
                day: r.day,
                environment: r.environment,
                tag_value: r.tag_value,
                amount_micros: r.amount_micros,
                unit: r.unit,
                estimated: r.estimated,
            })
            .collect())
    }
}

/// A cost range `[from, to)`: default this month so far (today included); sane dates,
/// `to` after `from`, at most `MAX_COST_REPORT_DAYS` days.
pub(crate) fn cost_range(
    today: NaiveDate,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<(NaiveDate, NaiveDate), CoreError> {
    let from = from.unwrap_or_else(|| today.with_day(1).unwrap_or(today));
    let to = to.unwrap_or(today + chrono::Duration::days(1));
    // Cost Explorer keeps about 14 months; these bounds only keep dates sane.
    let (earliest, latest) = (
        NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or(NaiveDate::MIN),
        NaiveDate::from_ymd_opt(2200, 1, 1).unwrap_or(NaiveDate::MAX),
    );
    for (field, day) in [("from", from), ("to", to)] {
        if !(earliest..=latest).contains(&day) {
            return Err(CoreError::invalid(
                field,
                format!("must be between {earliest} and {latest}"),
            ));
        }
    }
    if to <= from {
        return Err(CoreError::invalid("to", "must be after `from`"));
    }
    if (to - from).num_days() > MAX_COST_REPORT_DAYS {
        return Err(CoreError::invalid(
            "to",
            format!("a report covers at most {MAX_COST_REPORT_DAYS} days"),
        ));
    }
    Ok((from, to))
}

/// The longest range a cost report covers.
const MAX_COST_REPORT_DAYS: i64 = 732;

impl Services {
    /// Cost Explorer actuals on the days `[from, to)` (default: this month so far),
    /// for one environment or all, grouped; untagged cost is its own group.
    pub async fn cost_report(
        &self,
        environment: Option<Environment>,
        group_by: &CostGroupBy,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<CostReport, CoreError> {
        let (from, to) = cost_range(self.clock.now().date_naive(), from, to)?;
        let mut groups: BTreeMap<String, BTreeMap<NaiveDate, (i64, bool)>> = BTreeMap::new();
        let mut currency = None;
        let rows = self
            .cost_rows(
                group_by.tag_key(),
                from,
                to,
                environment.map(Environment::as_str),
            )
            .await?;
        for f in rows {
            currency.get_or_insert(f.unit);
            let value = match group_by {
                CostGroupBy::Environment => f.environment,
                _ => f.tag_value,
            };
            let day = groups.entry(value).or_default().entry(f.day).or_default();
            day.0 = day.0.saturating_add(f.amount_micros);
            day.1 |= f.estimated;
        }
        let names: BTreeMap<Uuid, String> = if *group_by == CostGroupBy::Project {
            let ids: Vec<Uuid> = groups
                .keys()
                .filter_map(|v| Uuid::parse_str(v).ok())
                .collect();
            projects::Entity::find()
                .filter(projects::Column::Id.is_in(ids))
                .all(self.store.db())
                .await?
                .into_iter()
                .map(|p| (p.id, p.name))
                .collect()
        } else {
            BTreeMap::new()
        };
        let mut total = 0i64;
        let mut untagged = 0i64;
        let mut estimated = false;
        let mut out: Vec<(i64, CostGroup)> = groups
            .into_iter()
            .map(|(value, days)| {
                let amount: i64 = days.values().map(|(m, _)| *m).sum();
                total = total.saturating_add(amount);
                if value.is_empty() {
                    untagged = untagged.saturating_add(amount);
                }
                estimated |= days.values().any(|(_, e)| *e);
                let group = CostGroup {
                    untagged: value.is_empty(),
                    project_name: Uuid::parse_str(&value)
                        .ok()
                        .and_then(|id| names.get(&id).cloned()),
                    value,
                    amount_usd: micros_to_usd(amount),
                    days: days
                        .into_iter()
                        .map(|(day, (micros, estimated))| CostDay {
                            day,
                            amount_usd: micros_to_usd(micros),
                            estimated,
                        })
                        .collect(),
                };
                (amount, group)
            })
            .collect();
        out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.value.cmp(&b.1.value)));
        Ok(CostReport {
            group_by: group_by.as_param(),
            environment: environment.map(|e| e.as_str().to_owned()),
            from,
            to,
            currency: currency.unwrap_or_else(|| "USD".into()),
            total_usd: micros_to_usd(total),
            untagged_usd: micros_to_usd(untagged),
            estimated,
            groups: out.into_iter().map(|(_, g)| g).collect(),
        })
    }
}
