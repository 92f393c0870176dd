//! Cost Explorer actuals as strata keeps them.

use chrono::NaiveDate;

/// The tag every strata-managed resource carries with its project's slug.
pub const PROJECT_TAG: &str = "strata:project";
/// The tag every strata-managed resource carries with its environment.
pub const ENVIRONMENT_TAG: &str = "strata:environment";

/// One day's cost for one environment and one value of a tag key; an empty
/// environment or value is cost without that tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostFigure {
    pub day: NaiveDate,
    pub environment: String,
    pub tag_value: String,
    /// Millionths of `unit`.
    pub amount_micros: i64,
    pub unit: String,
    /// Cost Explorer may still restate it.
    pub estimated: bool,
}
