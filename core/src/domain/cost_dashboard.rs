//! What an environment's cost page shows: month to date, month end, budgets, cost per
//! project and per day, a tag key's breakdown, and same-day estimates from the
//! proxy's metering next to Cost Explorer's actuals. Amounts in millionths of a dollar.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;
use strata_contract::{month_start, next_month_start};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Environment;

/// The projects drawn on their own in the daily chart; the rest is one "other" series.
pub const CHART_PROJECTS: usize = 6;

/// Cost Explorer's month-end forecast, or strata's linear projection and why.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum MonthEnd {
    /// Actuals before the forecast's first day plus Cost Explorer's forecast.
    Forecast { amount_micros: i64 },
    /// Month to date ÷ days elapsed × days in the month.
    Linear { amount_micros: i64, reason: String },
}

impl MonthEnd {
    pub fn amount_micros(&self) -> i64 {
        match self {
            Self::Forecast { amount_micros } | Self::Linear { amount_micros, .. } => *amount_micros,
        }
    }
}

/// Cost Explorer's stored forecast for an environment: its amount, or its refusal.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredForecast {
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub outcome: Result<i64, String>,
    pub fetched_at: DateTime<Utc>,
}

/// One project (or one `strata:project` value strata does not know) in an
/// environment's table.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProjectCost {
    /// `None` for cost tagged with a project that is not (or no longer) in strata.
    pub id: Option<Uuid>,
    /// The project's name, or the raw tag value.
    pub name: String,
    pub team: Option<String>,
    /// Spend on the page's date range (actuals).
    pub range_micros: i64,
    /// This month so far: actuals, plus metered estimates on days Cost Explorer has
    /// not reported yet.
    pub month_micros: i64,
    /// The same days of last month (actuals), for the trend.
    pub last_month_micros: i64,
    pub budget_micros: Option<i64>,
}

impl ProjectCost {
    /// Month to date as a share of the monthly budget, in percent.
    pub fn budget_percent(&self) -> Option<f64> {
        self.budget_micros
            .filter(|b| *b > 0)
            .map(|b| self.month_micros as f64 * 100.0 / b as f64)
    }

    /// Change against the same days of last month, in percent (`None` without last
    /// month's cost).
    pub fn trend_percent(&self) -> Option<f64> {
        (self.last_month_micros > 0).then(|| {
            (self.month_micros - self.last_month_micros) as f64 * 100.0
                / self.last_month_micros as f64
        })
    }
}

/// One day of the page's range.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DayCost {
    pub day: NaiveDate,
    /// Actuals per chart series, in `CostDashboard::series` order.
    pub by_series: Vec<i64>,
    /// Cost Explorer's total for the day, if it has reported the day.
    pub actual_micros: Option<i64>,
    /// The proxy's metered cost (tokens × catalog prices), if any.
    pub estimate_micros: Option<i64>,
    /// Cost Explorer may still restate the day.
    pub restatable: bool,
}

impl DayCost {
    /// Actual minus estimate, when both exist.
    pub fn difference_micros(&self) -> Option<i64> {
        Some(self.actual_micros? - self.estimate_micros?)
    }
}

/// A chart series: a project, every other project, or untagged cost.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChartSeries {
    pub name: String,
    pub kind: SeriesKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    Project,
    OtherProjects,
    Untagged,
}

/// One value of a tag key and its spend on the range (`value` empty: untagged).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TagSpend {
    pub value: String,
    pub micros: i64,
}

/// A tag key's spend per value on the range, largest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TagBreakdown {
    pub key: String,
    pub values: Vec<TagSpend>,
}

/// An environment's costs as its page shows them. Amounts (`…_micros`) are exact
/// millionths of a US dollar.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CostDashboard {
    pub environment: Environment,
    pub today: NaiveDate,
    /// The page's range `[from, to)`.
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Cost Explorer actuals this month so far.
    pub month_actual_micros: i64,
    /// Metered estimates for this month's days Cost Explorer has not reported.
    pub month_estimated_micros: i64,
    pub month_end: MonthEnd,
    /// The monthly budgets of the environment's projects, summed (`None`: none set).
    pub budget_micros: Option<i64>,
    /// Month to date of the projects that have a budget.
    pub budgeted_month_micros: i64,
    /// Every project's cost on the range, untagged included.
    pub range_micros: i64,
    /// Cost without a `strata:project` tag on the range.
    pub untagged_micros: i64,
    /// Largest spend on the range first, then projects without spend by name.
    pub projects: Vec<ProjectCost>,
    pub series: Vec<ChartSeries>,
    pub days: Vec<DayCost>,
    /// The tag key broken down (from `group_by=tag:<key>`).
    pub breakdown: Option<TagBreakdown>,
    /// Cost tag keys with stored figures, for the key chooser.
    pub tag_keys: Vec<String>,
    pub last_refresh: Option<DateTime<Utc>>,
}

impl CostDashboard {
    /// This month so far, estimates included.
    pub fn month_micros(&self) -> i64 {
        self.month_actual_micros + self.month_estimated_micros
    }

    /// Month to date of budgeted projects as a share of their budgets, in percent.
    pub fn budget_percent(&self) -> Option<f64> {
        self.budget_micros
            .filter(|b| *b > 0)
            .map(|b| self.budgeted_month_micros as f64 * 100.0 / b as f64)
    }

    /// The days table as CSV: `day,cost_explorer_usd,estimated_usd,difference_usd,status`
    /// (empty cells where a figure does not exist), days with a figure only.
    pub fn days_csv(&self) -> Result<Vec<u8>, String> {
        let usd = |m: Option<i64>| {
            m.map(|m| super::micros_to_usd(m).to_string())
                .unwrap_or_default()
        };
        let mut out = csv::Writer::from_writer(Vec::new());
        out.write_record([
            "day",
            "cost_explorer_usd",
            "estimated_usd",
            "difference_usd",
            "status",
        ])
        .map_err(|e| e.to_string())?;
        for d in &self.days {
            if d.actual_micros.is_none() && d.estimate_micros.is_none() {
                continue;
            }
            let status = match (d.actual_micros, d.restatable) {
                (None, _) => "estimate",
                (Some(_), true) => "restatable",
                (Some(_), false) => "final",
            };
            out.write_record([
                d.day.to_string(),
                usd(d.actual_micros),
                usd(d.estimate_micros),
                usd(d.difference_micros()),
                status.to_owned(),
            ])
            .map_err(|e| e.to_string())?;
        }
        out.into_inner().map_err(|e| e.to_string())
    }
}

/// Month to date (`today` counted whole) stretched over the month.
pub fn linear_month_end(month_to_date_micros: i64, today: NaiveDate) -> i64 {
    let elapsed = i64::from(today.day());
    let days = (next_month_start(today) - month_start(today)).num_days();
    month_to_date_micros.saturating_mul(days) / elapsed.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn linear_projection_stretches_month_to_date_over_the_month() {
        // 10 of 30 days cost $100: the month ends at $300.
        assert_eq!(
            linear_month_end(100_000_000, day("2026-11-10")),
            300_000_000
        );
        // February 2028 has 29 days.
        assert_eq!(linear_month_end(1_000_000, day("2028-02-01")), 29_000_000);
        assert_eq!(next_month_start(day("2026-12-31")), day("2027-01-01"));
    }

    #[test]
    fn budget_and_trend_percentages() {
        let p = ProjectCost {
            id: None,
            name: "a".into(),
            team: None,
            range_micros: 0,
            month_micros: 150_000_000,
            last_month_micros: 100_000_000,
            budget_micros: Some(300_000_000),
        };
        assert_eq!(p.budget_percent(), Some(50.0));
        assert_eq!(p.trend_percent(), Some(50.0));
        let none = ProjectCost {
            budget_micros: Some(0),
            last_month_micros: 0,
            ..p
        };
        assert_eq!((none.budget_percent(), none.trend_percent()), (None, None));
    }
}
