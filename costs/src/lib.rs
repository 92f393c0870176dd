//! The cost ingester: asks Cost Explorer for daily cost grouped by environment and by
//! each cost tag key (`strata:project` and the configured ones), stores it per day
//! with untagged cost kept, and never exceeds the daily budget of billed calls.
//!
//! What a refresh asks for, per tag key: the last `restate_days` days (Cost Explorer
//! restates them) through today, and any history not fetched yet back to
//! `history_days` ago. Every page is a billed call, recorded before the next is made.
//! Then, once a day per environment with recent cost, Cost Explorer's forecast of the
//! rest of the month (`GetCostForecast`); a refusal is stored with its reason, and
//! pages fall back to a linear projection that says so.

use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use clap::Args;
use strata_aws::{CostQuery, CostRow, CostUsage, ForecastQuery, SkippedRow};
use strata_core::CoreError;
use strata_core::config::clean_list;
use strata_core::domain::{
    CostFigure, ENVIRONMENT_TAG, Environment, PROJECT_TAG, next_month_start,
};
use strata_core::services::{Services, lease_owner};
use tokio_util::sync::CancellationToken;

const OPERATION: &str = "GetCostAndUsage";
const FORECAST: &str = "GetCostForecast";
/// Environments with project cost this recently get a forecast.
const FORECAST_LOOKBACK_DAYS: i64 = 62;
/// The lease that lets one replica at a time refresh.
const LEASE: &str = "cost-refresh";

/// Settings of the cost ingester (`strata serve`, `strata costs refresh`).
#[derive(Clone, Debug, Args)]
pub struct CostConfig {
    /// Cost tag keys to report by besides `strata:project`, comma-separated (e.g.
    /// `CostCenter,Team`); each must be active as a cost-allocation tag.
    #[arg(
        long = "cost-tag-keys",
        env = "STRATA_COST_TAG_KEYS",
        value_delimiter = ','
    )]
    pub tag_keys: Vec<String>,
    /// Cost Explorer `SERVICE` values counted, comma-separated; empty: every service.
    #[arg(
        long = "cost-services",
        env = "STRATA_COST_SERVICES",
        value_delimiter = ',',
        default_value = "Amazon Bedrock"
    )]
    pub services: Vec<String>,
    /// The Cost Explorer metric (`UnblendedCost`, `AmortizedCost`, `NetUnblendedCost` …).
    #[arg(
        long = "cost-metric",
        env = "STRATA_COST_METRIC",
        default_value = "UnblendedCost"
    )]
    pub metric: String,
    /// Recent days fetched again on every refresh (Cost Explorer restates them).
    #[arg(
        long = "cost-restate-days",
        env = "STRATA_COST_RESTATE_DAYS",
        default_value_t = 3
    )]
    pub restate_days: u32,
    /// Days of history fetched once.
    #[arg(
        long = "cost-history-days",
        env = "STRATA_COST_HISTORY_DAYS",
        default_value_t = 90
    )]
    pub history_days: u32,
    /// Billed Cost Explorer calls ($0.01 each, every page) allowed per UTC day, across
    /// all replicas.
    #[arg(
        long = "cost-daily-call-budget",
        env = "STRATA_COST_DAILY_CALL_BUDGET",
        default_value_t = 50
    )]
    pub daily_call_budget: u64,
    /// Seconds between scheduled refreshes in `strata serve`; 0 turns them off.
    #[arg(
        long = "cost-refresh-interval",
        env = "STRATA_COST_REFRESH_INTERVAL_SECS",
        default_value_t = 28_800
    )]
    pub refresh_interval_secs: u64,
}

impl CostConfig {
    /// The settings a refresh uses (list entries trimmed, empty ones dropped).
    pub fn settings(&self) -> CostSettings {
        CostSettings {
            tag_keys: clean_list(&self.tag_keys),
            services: clean_list(&self.services),
            metric: self.metric.trim().to_owned(),
            restate_days: self.restate_days,
            history_days: self.history_days.max(self.restate_days),
            daily_call_budget: self.daily_call_budget,
        }
    }
}

/// Refreshes every `interval` until `shutdown`, the first time right away; one
/// replica at a time (a lease), so replicas do not pay for the same calls.
pub async fn run(
    services: Services,
    cost_explorer: Arc<dyn CostUsage>,
    settings: CostSettings,
    interval: std::time::Duration,
    shutdown: CancellationToken,
) {
    let owner = lease_owner();
    // Long enough for a refresh that pages through the whole budget.
    let ttl = std::time::Duration::from_secs(15 * 60);
    loop {
        // A restart (or another replica) does not refresh again before it is due:
        // every refresh costs billed calls.
        let wait = match services.last_cost_refresh().await {
            Ok(last) => time_until_due(last, services.clock.now(), interval),
            Err(e) => {
                tracing::warn!(error.cause = %e, "cannot read when costs were last refreshed");
                interval
            }
        };
        if !wait.is_zero() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
        match services.claim_lease(LEASE, &owner, ttl).await {
            Ok(true) => {
                match refresh(&services, cost_explorer.as_ref(), &settings).await {
                    Ok(report) => {
                        for row in &report.skipped {
                            tracing::warn!(cost.row = %row, "a Cost Explorer row was left out");
                        }
                        tracing::info!(
                            cost.calls = report.calls,
                            cost.rows = report.rows,
                            cost.refreshed = ?report.refreshed,
                            cost.failed = report.failed.len(),
                            cost.skipped = report.skipped.len(),
                            cost.unattributed_rows = report.unattributed_rows,
                            cost.budget_exhausted = report.budget_exhausted,
                            "cost refresh finished"
                        )
                    }
                    Err(e) => tracing::warn!(error.cause = %e, "cost refresh failed"),
                }
                if let Err(e) = services.release_lease(LEASE, &owner).await {
                    tracing::warn!(error.cause = %e, "cannot release the cost-refresh lease");
                }
            }
            Ok(false) => tracing::debug!("another replica is refreshing costs"),
            Err(e) => tracing::warn!(error.cause = %e, "cannot claim the cost-refresh lease"),
        }
        if shutdown.is_cancelled() {
            return;
        }
    }
}

/// How long until a refresh is due, `interval` after the last one (now, if never).
fn time_until_due(
    last: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
    interval: std::time::Duration,
) -> std::time::Duration {
    let Some(last) = last else {
        return std::time::Duration::ZERO;
    };
    let since = (now - last).to_std().unwrap_or(std::time::Duration::ZERO);
    interval.saturating_sub(since)
}

#[derive(Debug, Clone)]
pub struct CostSettings {
    /// Cost tag keys besides `strata:project` (e.g. `CostCenter`, `Team`).
    pub tag_keys: Vec<String>,
    /// Cost Explorer `SERVICE` values to count (empty: every service).
    pub services: Vec<String>,
    pub metric: String,
    pub restate_days: u32,
    pub history_days: u32,
    /// Billed calls allowed per UTC day, across refreshes and replicas.
    pub daily_call_budget: u64,
}

impl Default for CostSettings {
    fn default() -> Self {
        Self {
            tag_keys: Vec::new(),
            services: vec!["Amazon Bedrock".into()],
            metric: "UnblendedCost".into(),
            restate_days: 3,
            history_days: 90,
            daily_call_budget: 50,
        }
    }
}

/// What one refresh did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RefreshReport {
    /// Billed calls made.
    pub calls: u64,
    /// Tag keys whose range was fetched completely and stored.
    pub refreshed: Vec<String>,
    pub rows: usize,
    /// The day's call budget ran out before every key was refreshed.
    pub budget_exhausted: bool,
    /// Keys whose fetch failed, with why (their stored figures are unchanged).
    pub failed: Vec<(String, String)>,
    /// Rows of Cost Explorer's answers that could not be read or fall outside the days
    /// asked, each naming the call, the row and the field; the rest was stored.
    pub skipped: Vec<SkippedRow>,
    /// Rows stored as reported whose environment or project strata does not know (a
    /// tag value that is not `dev`/`staging`/`prod`, or not one of its projects), and
    /// their amount in millionths of a dollar.
    pub unattributed_rows: usize,
    pub unattributed_micros: i64,
    /// Environments whose month-end forecast was asked for (and stored, or its
    /// refusal stored).
    pub forecasts: Vec<String>,
}

/// One refresh pass over every cost tag key.
pub async fn refresh(
    services: &Services,
    cost_explorer: &dyn CostUsage,
    settings: &CostSettings,
) -> Result<RefreshReport, CoreError> {
    let today = services.clock.now().date_naive();
    let end = today + Duration::days(1);
    let oldest = today - Duration::days(i64::from(settings.history_days));
    let recent = today - Duration::days(i64::from(settings.restate_days));
    let mut keys = vec![PROJECT_TAG.to_owned()];
    keys.extend(
        settings
            .tag_keys
            .iter()
            .filter(|k| k.as_str() != PROJECT_TAG && k.as_str() != ENVIRONMENT_TAG)
            .cloned(),
    );
    let mut report = RefreshReport::default();
    let known_projects = services.known_project_ids().await?;
    'keys: for key in keys {
        let start = match services.cost_coverage(&key).await? {
            // History is missing (a first run, or a longer history configured).
            None => oldest,
            Some((from, _)) if from > oldest => oldest,
            Some((_, to)) => to.min(recent).max(oldest),
        };
        let query = CostQuery {
            start,
            end,
            group_by: vec![ENVIRONMENT_TAG.to_owned(), key.clone()],
            services: settings.services.clone(),
            metric: settings.metric.clone(),
        };
        let mut rows: Vec<CostRow> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            if services.cost_explorer_calls_today().await? >= settings.daily_call_budget {
                tracing::warn!(
                    cost.tag_key = %key,
                    cost.daily_call_budget = settings.daily_call_budget,
                    "the Cost Explorer call budget for today is spent; the rest waits for tomorrow"
                );
                report.budget_exhausted = true;
                break 'keys;
            }
            let page = cost_explorer.page(&query, token.as_deref()).await;
            services
                .record_cost_explorer_call(OPERATION, page.is_ok())
                .await?;
            report.calls += 1;
            match page {
                Ok(page) => {
                    rows.extend(page.rows);
                    report.skipped.extend(page.skipped);
                    match page.next_token {
                        Some(next) => token = Some(next),
                        None => break,
                    }
                }
                Err(e) => {
                    tracing::warn!(cost.tag_key = %key, error.cause = %e, "Cost Explorer refused the cost query");
                    report.failed.push((key.clone(), e.to_string()));
                    continue 'keys;
                }
            }
        }
        // A day outside the range asked would make the replacement refuse the whole key.
        let (rows, outside): (Vec<CostRow>, Vec<CostRow>) = rows
            .into_iter()
            .partition(|r| r.day >= start && r.day < end);
        report
            .skipped
            .extend(outside.into_iter().map(|r| SkippedRow {
                operation: OPERATION.into(),
                period: r.day.to_string(),
                group: r.tags.iter().map(|(k, v)| format!("{k}${v}")).collect(),
                field: "TimePeriod.Start".into(),
                message: format!("outside the days asked, {start} to {end}"),
            }));
        let figures = figures(rows);
        for figure in &figures {
            let unknown_environment =
                !figure.environment.is_empty() && Environment::parse(&figure.environment).is_err();
            let unknown_project = key == PROJECT_TAG
                && !figure.tag_value.is_empty()
                && !uuid::Uuid::parse_str(&figure.tag_value)
                    .is_ok_and(|id| known_projects.contains(&id));
            if unknown_environment || unknown_project {
                report.unattributed_rows += 1;
                report.unattributed_micros = report
                    .unattributed_micros
                    .saturating_add(figure.amount_micros);
            }
        }
        report.rows += figures.len();
        services.replace_costs(&key, start, end, &figures).await?;
        report.refreshed.push(key);
    }
    if !report.budget_exhausted {
        forecasts(services, cost_explorer, settings, &mut report).await?;
    }
    Ok(report)
}

/// Asks for each environment's forecast of the rest of the month, once a day: a
/// forecast already fetched today for the same period is kept.
async fn forecasts(
    services: &Services,
    cost_explorer: &dyn CostUsage,
    settings: &CostSettings,
    report: &mut RefreshReport,
) -> Result<(), CoreError> {
    let today = services.clock.now().date_naive();
    let period = (today, next_month_start(today));
    let environments = services
        .cost_environments_since(today - Duration::days(FORECAST_LOOKBACK_DAYS))
        .await?;
    for environment in environments {
        if let Some(stored) = services.cost_forecast(&environment).await?
            && (stored.period_start, stored.period_end) == period
            && stored.fetched_at.date_naive() == today
        {
            continue;
        }
        if services.cost_explorer_calls_today().await? >= settings.daily_call_budget {
            report.budget_exhausted = true;
            return Ok(());
        }
        let query = ForecastQuery {
            start: period.0,
            end: period.1,
            tag: (ENVIRONMENT_TAG.to_owned(), environment.clone()),
            services: settings.services.clone(),
            metric: settings.metric.clone(),
        };
        let forecast = cost_explorer.forecast(&query).await;
        services
            .record_cost_explorer_call(FORECAST, forecast.is_ok())
            .await?;
        report.calls += 1;
        let outcome = match forecast {
            Ok(f) => Ok((f.amount_micros, f.unit)),
            Err(e) => {
                // Normal for a new account or environment (too little history).
                tracing::info!(cost.environment = %environment, error.cause = %e, "Cost Explorer gave no forecast; pages project linearly");
                Err(e.to_string())
            }
        };
        services
            .store_cost_forecast(&environment, period, outcome)
            .await?;
        report.forecasts.push(environment);
    }
    Ok(())
}

/// Rows grouped by (environment, key) as stored figures; amounts of the same day and
/// group (several units or pages) are summed.
fn figures(rows: Vec<CostRow>) -> Vec<CostFigure> {
    let mut out: std::collections::BTreeMap<(NaiveDate, String, String), CostFigure> =
        std::collections::BTreeMap::new();
    for row in rows {
        let value = |i: usize| row.tags.get(i).map(|(_, v)| v.clone()).unwrap_or_default();
        let (environment, tag_value) = (value(0), value(1));
        let figure = out
            .entry((row.day, environment.clone(), tag_value.clone()))
            .or_insert_with(|| CostFigure {
                day: row.day,
                environment,
                tag_value,
                amount_micros: 0,
                unit: row.unit.clone(),
                estimated: false,
            });
        figure.amount_micros = figure.amount_micros.saturating_add(row.amount_micros);
        figure.estimated |= row.estimated;
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration as StdDuration;

    use super::*;

    #[test]
    fn a_refresh_is_due_an_interval_after_the_last() {
        let now = chrono::Utc::now();
        let hour = StdDuration::from_secs(3600);
        assert_eq!(time_until_due(None, now, hour), StdDuration::ZERO);
        assert_eq!(
            time_until_due(Some(now - Duration::minutes(15)), now, hour),
            StdDuration::from_secs(45 * 60)
        );
        assert_eq!(
            time_until_due(Some(now - Duration::hours(2)), now, hour),
            StdDuration::ZERO
        );
        // A clock that went backwards does not wait longer than one interval.
        assert_eq!(
            time_until_due(Some(now + Duration::hours(1)), now, hour),
            hour
        );
    }

    #[test]
    fn figures_sum_one_day_and_group_and_keep_untagged() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default();
        let row = |env: &str, value: &str, micros: i64, estimated: bool| CostRow {
            day: d,
            tags: vec![
                (ENVIRONMENT_TAG.into(), env.into()),
                ("CostCenter".into(), value.into()),
            ],
            amount_micros: micros,
            unit: "USD".into(),
            estimated,
        };
        let out = figures(vec![
            row("prod", "eng", 1, false),
            row("prod", "eng", 2, true),
            row("", "", 5, false),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (
                out[0].environment.as_str(),
                out[0].tag_value.as_str(),
                out[0].amount_micros
            ),
            ("", "", 5)
        );
        assert_eq!((out[1].amount_micros, out[1].estimated), (3, true));
    }
}
