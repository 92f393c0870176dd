//! A project's monthly budget against its metered spend, and the threshold events
//! (50 / 80 / 100 %) recorded as spend crosses them.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// Shares of the monthly budget that are recorded once per month when crossed.
pub const BUDGET_THRESHOLDS: [i16; 3] = [50, 80, 100];

/// The thresholds `spent` has reached of `budget` (both in micro-dollars).
pub fn thresholds_reached(spent_micros: i64, budget_micros: i64) -> impl Iterator<Item = i16> {
    BUDGET_THRESHOLDS.into_iter().filter(move |t| {
        // spent / budget ≥ t / 100, without division; a zero budget is reached at once.
        i128::from(spent_micros) * 100 >= i128::from(budget_micros) * i128::from(*t)
    })
}

/// Spend crossed a share of the budget.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BudgetEvent {
    /// The UTC month, as its first day.
    pub month: NaiveDate,
    /// 50, 80 or 100.
    pub threshold_percent: i16,
    /// Metered month-to-date spend when the crossing was recorded.
    pub spent_usd: f64,
    pub budget_usd: f64,
    pub recorded_at: DateTime<Utc>,
}

/// `GET /api/v1/projects/{id}/budget`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BudgetStatus {
    /// The current UTC month, as its first day.
    pub month: NaiveDate,
    /// `null`: the project has no budget (then no events are recorded).
    pub monthly_budget_usd: Option<f64>,
    /// Metered spend through the proxy this month (tokens × catalog prices), as the
    /// proxies have reported it (they send usage every few seconds).
    pub spent_usd: f64,
    pub spent_micros: i64,
    /// Spend ÷ budget × 100; `null` without a budget.
    pub percent_used: Option<f64>,
    /// Threshold events, newest month first (the last 12 months).
    pub events: Vec<BudgetEvent>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_reached_at_their_share_exactly() {
        let reached = |s, b| thresholds_reached(s, b).collect::<Vec<_>>();
        assert_eq!(reached(0, 1_000), Vec::<i16>::new());
        assert_eq!(reached(499, 1_000), Vec::<i16>::new());
        assert_eq!(reached(500, 1_000), [50]);
        assert_eq!(reached(800, 1_000), [50, 80]);
        assert_eq!(reached(999, 1_000), [50, 80]);
        assert_eq!(reached(1_000, 1_000), [50, 80, 100]);
        assert_eq!(reached(0, 0), [50, 80, 100]);
        assert_eq!(reached(i64::MAX, i64::MAX), [50, 80, 100]);
    }
}
