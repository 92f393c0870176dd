//! Calendar months, which monthly budgets and their counters run on.

use chrono::{Datelike, Duration, NaiveDate};

use crate::BudgetPeriod;

/// The first day of `day`'s month.
pub fn month_start(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

/// The first day of the month after `day`'s.
pub fn next_month_start(day: NaiveDate) -> NaiveDate {
    let first = month_start(day);
    first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first)
}

impl BudgetPeriod {
    /// The period holding `day`: `[start, end)`.
    pub fn bounds(self, day: NaiveDate) -> (NaiveDate, NaiveDate) {
        match self {
            Self::Day => (day, day + Duration::days(1)),
            Self::Week => {
                let start = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
                (start, start + Duration::days(7))
            }
            Self::Month => (month_start(day), next_month_start(day)),
        }
    }
}
