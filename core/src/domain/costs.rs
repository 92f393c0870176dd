//! Cost Explorer actuals as strata keeps them.

use chrono::NaiveDate;
use uuid::Uuid;

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

/// What a cost report is grouped by: `project` (the `strata:project` tag),
/// `environment`, or `tag:<key>` (a cost tag key strata ingests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CostGroupBy {
    Project,
    Environment,
    Tag(String),
}

impl CostGroupBy {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "project" => Ok(Self::Project),
            "environment" => Ok(Self::Environment),
            _ => match s.strip_prefix("tag:") {
                Some(key)
                    if !key.is_empty()
                        && key.len() <= 128
                        && key
                            .chars()
                            .all(|c| c.is_alphanumeric() || " _.:/=+-@".contains(c)) =>
                {
                    Ok(Self::Tag(key.to_owned()))
                }
                _ => Err("must be `project`, `environment` or `tag:<tag key>`".into()),
            },
        }
    }

    /// The stored tag key the report reads.
    pub fn tag_key(&self) -> &str {
        match self {
            Self::Project | Self::Environment => PROJECT_TAG,
            Self::Tag(key) => key,
        }
    }

    pub fn as_param(&self) -> String {
        match self {
            Self::Project => "project".into(),
            Self::Environment => "environment".into(),
            Self::Tag(key) => format!("tag:{key}"),
        }
    }
}

/// Cost Explorer actuals for a range, grouped.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct CostReport {
    /// `project`, `environment` or `tag:<key>`.
    pub group_by: String,
    /// The environment reported on; absent: every environment.
    pub environment: Option<String>,
    /// First day (inclusive), `YYYY-MM-DD`.
    pub from: NaiveDate,
    /// Last day (exclusive).
    pub to: NaiveDate,
    pub currency: String,
    /// Every group together, in US dollars.
    pub total_usd: f64,
    /// Cost that carries no value for the grouping tag.
    pub untagged_usd: f64,
    /// Some day in the range may still be restated by Cost Explorer.
    pub estimated: bool,
    /// Largest first; the untagged group (if any) is among them with `untagged: true`.
    pub groups: Vec<CostGroup>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct CostGroup {
    /// The tag value (a project id for `project`, an environment name for
    /// `environment`); empty for untagged cost.
    pub value: String,
    pub untagged: bool,
    /// The project's name, for `group_by=project` when the project is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_name: Option<String>,
    pub amount_usd: f64,
    pub days: Vec<CostDay>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct CostDay {
    pub day: NaiveDate,
    pub amount_usd: f64,
    pub estimated: bool,
}

/// Millionths of a dollar as dollars (exact to the millionth for any real amount).
pub fn micros_to_usd(micros: i64) -> f64 {
    micros as f64 / 1_000_000.0
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR) gets a
/// leading `'`: tag values come from users, and finance opens these files in Excel.
pub(crate) fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

impl CostReport {
    /// One row per group and day: `day,group,untagged,project_name,amount_usd,estimated`.
    pub fn to_csv(&self) -> Result<Vec<u8>, String> {
        let mut out = csv::Writer::from_writer(Vec::new());
        let header = [
            "day",
            "group",
            "untagged",
            "project_name",
            "amount_usd",
            "estimated",
        ];
        out.write_record(header).map_err(|e| e.to_string())?;
        for group in &self.groups {
            for day in &group.days {
                out.write_record([
                    day.day.to_string().as_str(),
                    &spreadsheet_safe(&group.value),
                    if group.untagged { "true" } else { "false" },
                    &spreadsheet_safe(group.project_name.as_deref().unwrap_or_default()),
                    &format!("{:.6}", day.amount_usd),
                    if day.estimated { "true" } else { "false" },
                ])
                .map_err(|e| e.to_string())?;
            }
        }
        out.into_inner().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_by_parses_the_three_forms_and_refuses_the_rest() {
        assert_eq!(CostGroupBy::parse("project"), Ok(CostGroupBy::Project));
        assert_eq!(
            CostGroupBy::parse("environment"),
            Ok(CostGroupBy::Environment)
        );
        assert_eq!(
            CostGroupBy::parse("tag:CostCenter"),
            Ok(CostGroupBy::Tag("CostCenter".into()))
        );
        for bad in ["", "tag:", "model", "tag:a;b", "TAG:x"] {
            assert!(CostGroupBy::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(CostGroupBy::Environment.tag_key(), PROJECT_TAG);
    }

    #[test]
    fn csv_has_a_row_per_group_and_day_and_defuses_formulas() {
        let day = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap_or_default();
        let group = |value: &str, name: Option<&str>, usd: f64| CostGroup {
            value: value.into(),
            untagged: value.is_empty(),
            project_name: name.map(str::to_owned),
            amount_usd: usd,
            days: vec![CostDay {
                day,
                amount_usd: usd,
                estimated: false,
            }],
        };
        let report = CostReport {
            group_by: "tag:CostCenter".into(),
            environment: None,
            from: day,
            to: day,
            currency: "USD".into(),
            total_usd: 13.75,
            untagged_usd: 0.25,
            estimated: false,
            groups: vec![
                group("=HYPERLINK(\"http://x\")", None, 12.5),
                group("eng, \"core\"", Some("-rm"), 1.0),
                group("", None, 0.25),
            ],
        };
        let text = String::from_utf8(report.to_csv().unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            text,
            "day,group,untagged,project_name,amount_usd,estimated\n\
             2026-10-01,\"'=HYPERLINK(\"\"http://x\"\")\",false,,12.500000,false\n\
             2026-10-01,\"eng, \"\"core\"\"\",false,'-rm,1.000000,false\n\
             2026-10-01,,true,,0.250000,false\n"
        );
    }
}

/// One project's day: the proxy's metered estimate next to Cost Explorer's actual.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ProjectDayDrift {
    pub project_id: Uuid,
    pub project_name: String,
    pub day: NaiveDate,
    /// What the proxy metered (tokens × catalog prices), in US dollars.
    pub metered_usd: f64,
    /// What Cost Explorer reports; `null` while it has not reported the day.
    pub billed_usd: Option<f64>,
    /// Cost Explorer may still restate the day: no drift is flagged on it yet.
    pub billed_estimated: bool,
    /// `(metered − billed) / billed`, in percent; `null` without a bill or when the
    /// bill is zero.
    pub difference_percent: Option<f64>,
    /// The difference exceeds the threshold (either way) on a day Cost Explorer will
    /// not restate; spend that bypassed the proxy is flagged as that instead.
    pub drift: bool,
    /// Cost Explorer billed the project on a day the proxy metered nothing: traffic
    /// that did not go through strata.
    pub bypassed_proxy: bool,
}

/// `GET /api/v1/environments/{environment}/estimate-vs-bill`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct EstimateVsBill {
    pub environment: String,
    /// First day (inclusive).
    pub from: NaiveDate,
    /// Last day (exclusive).
    pub to: NaiveDate,
    /// `STRATA_COST_DRIFT_PCT`: a difference above it (either way) is flagged.
    pub threshold_percent: f64,
    /// Every project and day with a metered or a billed cost, oldest first.
    pub days: Vec<ProjectDayDrift>,
    pub drifted: usize,
    pub bypassed: usize,
}

impl ProjectDayDrift {
    /// Compares a project's day; amounts in millionths of a dollar.
    pub fn compare(
        (project_id, project_name): (Uuid, String),
        day: NaiveDate,
        metered_micros: i64,
        billed: Option<(i64, bool)>,
        threshold_percent: f64,
    ) -> Self {
        let billed_micros = billed.map(|(micros, _)| micros);
        let billed_estimated = billed.is_some_and(|(_, estimated)| estimated);
        let difference_percent = billed_micros
            .filter(|b| *b != 0)
            .map(|b| (metered_micros - b) as f64 * 100.0 / b as f64);
        // Spend the proxy never saw is its own finding, not a drift of its metering.
        let bypassed_proxy = metered_micros == 0 && billed_micros.is_some_and(|b| b > 0);
        Self {
            project_id,
            project_name,
            day,
            metered_usd: micros_to_usd(metered_micros),
            billed_usd: billed_micros.map(micros_to_usd),
            billed_estimated,
            difference_percent,
            drift: !billed_estimated
                && !bypassed_proxy
                && difference_percent.is_some_and(|d| d.abs() > threshold_percent),
            bypassed_proxy,
        }
    }
}
