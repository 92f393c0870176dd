//! The cost ingester: asks Cost Explorer for daily cost grouped by environment and by
//! each cost tag key (`strata:project` and the configured ones), stores it per day
//! with untagged cost kept, and never exceeds the daily budget of billed calls.
//!
//! What a refresh asks for, per tag key: the last `restate_days` days (Cost Explorer
//! restates them) through today, and any history not fetched yet back to
//! `history_days` ago. Every page is a billed call, recorded before the next is made.

use chrono::{Duration, NaiveDate};
use strata_aws::{CostQuery, CostRow, CostUsage};
use strata_core::CoreError;
use strata_core::domain::{CostFigure, ENVIRONMENT_TAG, PROJECT_TAG};
use strata_core::services::Services;

const OPERATION: &str = "GetCostAndUsage";

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
        let figures = figures(rows);
        report.rows += figures.len();
        services.replace_costs(&key, start, end, &figures).await?;
        report.refreshed.push(key);
    }
    Ok(report)
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
