//! The proxy's metered estimate against Cost Explorer's bill, per project and day:
//! drift above a threshold, billed spend the proxy never saw, and both as FOCUS rows.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::Services;
use crate::CoreError;
use crate::domain::{
    ENVIRONMENT_TAG, Environment, EstimateVsBill, FocusRow, FocusSource, PROJECT_TAG,
    ProjectDayDrift,
};
use crate::store::entities::{cost_coverage, cost_daily, projects, usage_daily};

/// Longest range one comparison covers.
const MAX_DAYS: i64 = 366;

impl Services {
    /// Every project-day of `environment` on `[from, to)` with a metered or a billed
    /// cost, compared.
    pub async fn estimate_vs_bill(
        &self,
        environment: Environment,
        from: NaiveDate,
        to: NaiveDate,
        threshold_percent: f64,
    ) -> Result<EstimateVsBill, CoreError> {
        if to <= from {
            return Err(CoreError::invalid("to", "must be after from"));
        }
        if (to - from).num_days() > MAX_DAYS {
            return Err(CoreError::invalid(
                "from",
                format!("the range may cover at most {MAX_DAYS} days"),
            ));
        }
        let db = self.store.db();
        let names: BTreeMap<Uuid, String> = projects::Entity::find()
            .select_only()
            .columns([projects::Column::Id, projects::Column::Name])
            .filter(projects::Column::Environment.eq(environment.as_str()))
            .into_tuple::<(Uuid, String)>()
            .all(db)
            .await?
            .into_iter()
            .collect();
        let mut metered: BTreeMap<(NaiveDate, Uuid), i64> = BTreeMap::new();
        for (project, day, micros) in self.metered_days(names.keys().copied(), from, to).await? {
            *metered.entry((day, project)).or_default() += micros;
        }
        let mut billed: BTreeMap<(NaiveDate, Uuid), (i64, bool)> = BTreeMap::new();
        let rows: Vec<(String, NaiveDate, i64, bool)> = cost_daily::Entity::find()
            .select_only()
            .columns([
                cost_daily::Column::TagValue,
                cost_daily::Column::Day,
                cost_daily::Column::AmountMicros,
                cost_daily::Column::Estimated,
            ])
            .filter(cost_daily::Column::TagKey.eq(PROJECT_TAG))
            .filter(cost_daily::Column::Environment.eq(environment.as_str()))
            .filter(cost_daily::Column::Day.gte(from))
            .filter(cost_daily::Column::Day.lt(to))
            .into_tuple()
            .all(db)
            .await?;
        for (value, day, micros, estimated) in rows {
            let Some(project) = Uuid::parse_str(&value)
                .ok()
                .filter(|p| names.contains_key(p))
            else {
                continue;
            };
            let entry = billed.entry((day, project)).or_default();
            entry.0 += micros;
            entry.1 |= estimated;
        }
        // Days Cost Explorer has been asked about: a project without a row there was
        // billed nothing; after them, nothing is known yet.
        let coverage = cost_coverage::Entity::find_by_id(PROJECT_TAG.to_owned())
            .one(db)
            .await?
            .map(|c| (c.fetched_from, c.fetched_to));
        let reported = |day: NaiveDate| coverage.is_some_and(|(f, t)| day >= f && day < t);
        let mut keys: Vec<(NaiveDate, Uuid)> =
            metered.keys().chain(billed.keys()).copied().collect();
        keys.sort_unstable();
        keys.dedup();
        let days: Vec<ProjectDayDrift> = keys
            .into_iter()
            .map(|(day, project)| {
                let bill = billed
                    .get(&(day, project))
                    .copied()
                    .or_else(|| reported(day).then_some((0, false)));
                ProjectDayDrift::compare(
                    (project, names.get(&project).cloned().unwrap_or_default()),
                    day,
                    metered.get(&(day, project)).copied().unwrap_or(0),
                    bill,
                    threshold_percent,
                )
            })
            .collect();
        Ok(EstimateVsBill {
            environment: environment.as_str().to_owned(),
            from,
            to,
            threshold_percent,
            drifted: days.iter().filter(|d| d.drift).count(),
            bypassed: days.iter().filter(|d| d.bypassed_proxy).count(),
            days,
        })
    }
}

impl Services {
    /// An environment's cost on `[from, to)` as FOCUS rows, per project and day: Cost
    /// Explorer's actuals, and for the days it has not reported yet, the proxy's
    /// metered estimates (marked).
    pub async fn focus_rows(
        &self,
        environment: Environment,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<FocusRow>, CoreError> {
        if to <= from || (to - from).num_days() > MAX_DAYS {
            return Err(CoreError::invalid(
                "to",
                format!("must be after from, and at most {MAX_DAYS} days later"),
            ));
        }
        let db = self.store.db();
        let filter = super::ProjectFilter {
            environment: Some(environment),
            ..super::ProjectFilter::default()
        };
        let mut projects: BTreeMap<Uuid, crate::domain::Project> = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .list_projects(&filter, cursor.as_deref(), Some(200))
                .await?;
            projects.extend(page.items.into_iter().map(|p| (p.id, p)));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let account_of = |p: &crate::domain::Project| {
            p.aws
                .role_arn
                .as_deref()
                .and_then(|arn| arn.split(':').nth(4))
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
        };
        // strata's roles all live in the account it runs in: a row without a project
        // of its own (or before its first reconcile) bills to that account too.
        let environment_account = projects.values().find_map(account_of);
        let row =
            |day: NaiveDate, value: &str, micros: i64, currency: String, source, estimated| {
                let project = Uuid::parse_str(value).ok().and_then(|id| projects.get(&id));
                let mut tags: BTreeMap<String, String> = project
                    .map(|p| p.tags.clone().into_iter().collect())
                    .unwrap_or_default();
                tags.insert(PROJECT_TAG.to_owned(), value.to_owned());
                tags.insert(ENVIRONMENT_TAG.to_owned(), environment.as_str().to_owned());
                FocusRow {
                    day,
                    environment: environment.as_str().to_owned(),
                    project_id: project.map(|p| p.id),
                    project_name: project
                        .map_or_else(|| value.to_owned(), |p| p.name.as_str().to_owned()),
                    region: project.map(|p| p.region.as_str().to_owned()),
                    account_id: project
                        .and_then(account_of)
                        .or_else(|| environment_account.clone()),
                    resource_arn: project.and_then(|p| p.aws.mantle_project_arn.clone()),
                    tags,
                    amount_micros: micros,
                    currency,
                    source,
                    estimated,
                }
            };
        let mut rows = Vec::new();
        let actuals: Vec<(String, NaiveDate, i64, String, bool)> = cost_daily::Entity::find()
            .select_only()
            .columns([
                cost_daily::Column::TagValue,
                cost_daily::Column::Day,
                cost_daily::Column::AmountMicros,
                cost_daily::Column::Unit,
                cost_daily::Column::Estimated,
            ])
            .filter(cost_daily::Column::TagKey.eq(PROJECT_TAG))
            .filter(cost_daily::Column::Environment.eq(environment.as_str()))
            .filter(cost_daily::Column::Day.gte(from))
            .filter(cost_daily::Column::Day.lt(to))
            .into_tuple()
            .all(db)
            .await?;
        for (value, day, micros, unit, estimated) in actuals {
            rows.push(row(
                day,
                &value,
                micros,
                unit,
                FocusSource::CostExplorer,
                estimated,
            ));
        }
        // After the days Cost Explorer has been asked about, the proxy's metering.
        let reported_until = cost_coverage::Entity::find_by_id(PROJECT_TAG.to_owned())
            .one(db)
            .await?
            .map_or(from, |c| c.fetched_to.max(from));
        if reported_until < to {
            let metered = self
                .metered_days(projects.keys().copied(), reported_until, to)
                .await?;
            for (project, day, micros) in metered {
                rows.push(row(
                    day,
                    &project.to_string(),
                    micros,
                    "USD".into(),
                    FocusSource::ProxyEstimate,
                    true,
                ));
            }
        }
        rows.sort_by(|a, b| (a.day, &a.project_name).cmp(&(b.day, &b.project_name)));
        Ok(rows)
    }
}

impl Services {
    /// The proxy's metered cost of `projects` per day on `[from, to)`.
    async fn metered_days(
        &self,
        projects: impl IntoIterator<Item = Uuid>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(Uuid, NaiveDate, i64)>, CoreError> {
        Ok(usage_daily::Entity::find()
            .select_only()
            .columns([
                usage_daily::Column::ProjectId,
                usage_daily::Column::Day,
                usage_daily::Column::CostMicros,
            ])
            .filter(usage_daily::Column::ProjectId.is_in(projects))
            .filter(usage_daily::Column::Day.gte(from))
            .filter(usage_daily::Column::Day.lt(to))
            .into_tuple()
            .all(self.store.db())
            .await?)
    }
}
