//! The `/ui` pages: each is a template plus a view made from domain values, with
//! every amount and time already written out, so templates only place text.

use askama::Template;
use askama_web::WebTemplate;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use strata_core::domain::{
    ApiKey, ConditionStatus, CostDashboard, EstimateVsBill, KeyStatus, MonthEnd, Project,
    UsageReport, UsageRow,
};

use crate::chart::StackedChart;
use crate::format;

/// The signed-in caller, as the page header shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Nav {
    pub subject: String,
    pub roles: String,
    /// For the sign-out form (and every other form on the page).
    pub csrf: String,
    /// Environments whose costs the caller may read (empty: none).
    pub cost_environments: Vec<String>,
    /// The caller may see the notification destinations.
    pub notifications: bool,
    /// The caller may see the budgets.
    pub budgets: bool,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "signin.html")]
pub struct SignInPage {
    pub nav: Option<Nav>,
    pub csrf: String,
    /// Where to go after signing in (a `/ui` path).
    pub next: String,
    pub error: Option<String>,
    /// "Sign in with your identity provider", when configured.
    pub sso_href: Option<String>,
}

/// Shown after the identity provider sent the browser back: a same-site step to the
/// page asked for (a redirect would carry on the provider's cross-site navigation,
/// which does not send SameSite=Strict cookies).
#[derive(Debug, Template, WebTemplate)]
#[template(path = "signed_in.html")]
pub struct SignedInPage {
    pub nav: Option<Nav>,
    pub next: String,
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub nav: Option<Nav>,
    pub status: u16,
    pub title: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectLink {
    pub href: String,
    pub name: String,
    pub display_name: String,
    pub environment: String,
    pub team: String,
    pub status: String,
}

impl ProjectLink {
    pub fn new(p: &Project) -> Self {
        Self {
            href: format!("/ui/projects/{}", p.id),
            name: p.name.to_string(),
            display_name: p.display_name.clone(),
            environment: p.environment.to_string(),
            team: p.team.to_string(),
            status: p.status.to_string(),
        }
    }
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "home.html")]
pub struct HomePage {
    pub nav: Option<Nav>,
    pub projects: Vec<ProjectLink>,
    /// More projects exist than the page lists.
    pub more: bool,
}

/// A `<select>` option.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BudgetView {
    pub spent: String,
    pub budget: String,
    pub percent: String,
    pub over: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectCostRow {
    pub href: Option<String>,
    pub name: String,
    pub team: String,
    pub range: String,
    pub month: String,
    pub budget: String,
    pub budget_percent: String,
    pub over_budget: bool,
    pub trend: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BreakdownRow {
    pub value: String,
    pub untagged: bool,
    pub amount: String,
    pub share: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Breakdown {
    pub key: String,
    pub rows: Vec<BreakdownRow>,
    pub csv_href: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DayRow {
    pub day: String,
    pub actual: String,
    pub estimate: String,
    pub difference: String,
    pub status: String,
}

/// Everything `/ui/env/{environment}/costs` shows, written out.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvCostsView {
    pub environment: String,
    /// `YYYY-MM-DD`, inclusive both ends (the page's date pickers).
    pub from: String,
    pub through: String,
    pub range_label: String,
    pub month_label: String,
    pub month_to_date: String,
    /// The part of month to date that is the proxy's estimate, if any.
    pub month_estimated: Option<String>,
    pub month_end: String,
    pub month_end_source: String,
    /// Why the month end is a linear projection.
    pub month_end_note: Option<String>,
    pub budget: Option<BudgetView>,
    pub range_total: String,
    pub untagged: String,
    pub untagged_share: Option<String>,
    pub last_refresh: String,
    pub projects: Vec<ProjectCostRow>,
    pub breakdown: Option<Breakdown>,
    pub days: Vec<DayRow>,
    pub group_choices: Vec<Choice>,
    pub csv_projects_href: String,
    pub csv_days_href: String,
    /// The range as a FinOps FOCUS 1.0 dataset.
    pub focus_href: String,
}

fn share(part: i64, whole: i64) -> String {
    if whole <= 0 {
        "—".into()
    } else {
        format::percent(part as f64 * 100.0 / whole as f64)
    }
}

/// `a=b&c=d`, form-encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

impl EnvCostsView {
    /// `group_by` is the page's selection (`project` or `tag:<key>`).
    pub fn new(costs: &CostDashboard, group_by: &str, can_open_projects: bool) -> Self {
        let env = costs.environment.as_str();
        let through: NaiveDate = costs.to - Duration::days(1);
        let (from, through_s) = (costs.from.to_string(), through.to_string());
        let csv = |group: &str| {
            format!(
                "/ui/env/{env}/costs.csv?{}",
                query(&[
                    ("group_by", group),
                    ("from", &from),
                    ("through", &through_s)
                ])
            )
        };
        let month_end_source = match &costs.month_end {
            MonthEnd::Forecast { .. } => "Cost Explorer forecast".to_owned(),
            MonthEnd::Linear { .. } => "Linear projection".to_owned(),
        };
        let month_end_note = match &costs.month_end {
            MonthEnd::Forecast { .. } => None,
            MonthEnd::Linear { reason, .. } => Some(reason.clone()),
        };
        let projects = costs
            .projects
            .iter()
            .map(|p| ProjectCostRow {
                href: p
                    .id
                    .filter(|_| can_open_projects)
                    .map(|id| format!("/ui/projects/{id}")),
                name: p.name.clone(),
                team: p.team.clone().unwrap_or_else(|| "—".into()),
                range: format::usd(p.range_micros),
                month: format::usd(p.month_micros),
                budget: p.budget_micros.map_or_else(|| "—".into(), format::usd),
                budget_percent: p
                    .budget_percent()
                    .map_or_else(|| "—".into(), format::percent),
                over_budget: p.budget_percent().is_some_and(|x| x > 100.0),
                trend: p.trend_percent().map_or_else(|| "—".into(), format::change),
            })
            .collect();
        let breakdown = costs.breakdown.as_ref().map(|b| {
            let (key, rows) = (&b.key, &b.values);
            let total: i64 = rows.iter().map(|r| r.micros).sum();
            Breakdown {
                key: key.clone(),
                csv_href: csv(&format!("tag:{key}")),
                rows: rows
                    .iter()
                    .map(|r| BreakdownRow {
                        value: if r.value.is_empty() {
                            format!("(no {key} tag)")
                        } else {
                            r.value.clone()
                        },
                        untagged: r.value.is_empty(),
                        amount: format::usd(r.micros),
                        share: share(r.micros, total),
                    })
                    .collect(),
            }
        });
        let days = costs
            .days
            .iter()
            .filter(|d| d.actual_micros.is_some() || d.estimate_micros.is_some())
            .map(|d| DayRow {
                day: d.day.to_string(),
                actual: d
                    .actual_micros
                    .map_or_else(|| "not reported yet".into(), format::usd),
                estimate: d.estimate_micros.map_or_else(|| "—".into(), format::usd),
                difference: d
                    .difference_micros()
                    .map_or_else(|| "—".into(), format::usd),
                status: match (d.actual_micros, d.restatable) {
                    (None, _) => "estimate only".into(),
                    (Some(_), true) => "may still be restated".into(),
                    (Some(_), false) => "final".into(),
                },
            })
            .collect();
        let mut group_choices = vec![Choice {
            value: "project".into(),
            label: "Project only".into(),
            selected: group_by == "project",
        }];
        group_choices.extend(costs.tag_keys.iter().map(|k| {
            let value = format!("tag:{k}");
            Choice {
                selected: group_by == value,
                label: k.clone(),
                value,
            }
        }));
        Self {
            environment: env.to_owned(),
            range_label: format!(
                "{} – {}",
                costs.from.format("%b %-d, %Y"),
                through.format("%b %-d, %Y")
            ),
            month_label: costs.today.format("%B %Y").to_string(),
            from: from.clone(),
            through: through_s.clone(),
            month_to_date: format::usd(costs.month_micros()),
            month_estimated: (costs.month_estimated_micros > 0)
                .then(|| format::usd(costs.month_estimated_micros)),
            month_end: format::usd(costs.month_end.amount_micros()),
            month_end_source,
            month_end_note,
            budget: costs.budget_micros.map(|b| BudgetView {
                spent: format::usd(costs.budgeted_month_micros),
                budget: format::usd(b),
                percent: costs
                    .budget_percent()
                    .map_or_else(|| "—".into(), format::percent),
                over: costs.budget_percent().is_some_and(|x| x > 100.0),
            }),
            range_total: format::usd(costs.range_micros),
            untagged: format::usd(costs.untagged_micros),
            untagged_share: (costs.untagged_micros > 0)
                .then(|| share(costs.untagged_micros, costs.range_micros)),
            last_refresh: costs.last_refresh.map_or_else(
                || "never (no cost refresh has run yet)".into(),
                format::time,
            ),
            projects,
            breakdown,
            days,
            group_choices,
            csv_projects_href: csv("project"),
            csv_days_href: csv("day"),
            focus_href: format!("/ui/env/{env}/focus.csv?from={from}&through={through_s}"),
        }
    }
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "env_costs.html")]
pub struct EnvCostsPage {
    pub nav: Option<Nav>,
    pub view: EnvCostsView,
    pub chart: StackedChart,
    pub drift: DriftView,
}

/// The estimate-vs-bill section: the flagged project-days only (the rest agree).
#[derive(Debug, Clone, PartialEq)]
pub struct DriftView {
    pub threshold: String,
    /// Project-days with both a metered estimate and a bill, and no flag.
    pub agreeing: usize,
    pub flagged: Vec<DriftRow>,
    /// The API's request for the same comparison.
    pub api_path: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DriftRow {
    pub href: String,
    pub project: String,
    pub day: String,
    pub billed: String,
    pub metered: String,
    pub difference: String,
    /// `Bypassed the proxy` or `Drift`.
    pub finding: String,
}

impl DriftView {
    pub fn new(report: &EstimateVsBill) -> Self {
        let money = |usd: f64| format::usd((usd * 1e6).round() as i64);
        let flagged: Vec<DriftRow> = report
            .days
            .iter()
            .filter(|d| d.drift || d.bypassed_proxy)
            .map(|d| DriftRow {
                href: format!("/ui/projects/{}", d.project_id),
                project: d.project_name.clone(),
                day: d.day.to_string(),
                billed: d.billed_usd.map_or("—".into(), money),
                metered: money(d.metered_usd),
                difference: d.difference_percent.map_or("—".into(), format::change),
                finding: if d.bypassed_proxy {
                    "Bypassed the proxy: billed, nothing metered".into()
                } else {
                    "Estimate and bill differ".into()
                },
            })
            .collect();
        let agreeing = report
            .days
            .iter()
            .filter(|d| d.billed_usd.is_some() && !d.drift && !d.bypassed_proxy)
            .count();
        Self {
            threshold: format::percent(report.threshold_percent),
            agreeing,
            flagged,
            api_path: format!(
                "/api/v1/environments/{}/estimate-vs-bill?from={}&to={}",
                report.environment, report.from, report.to
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub label: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConditionRow {
    pub kind: String,
    pub status: String,
    pub ok: bool,
    pub reason: String,
    pub message: String,
    pub since: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub models: String,
    pub status: String,
    pub expires: String,
    pub last_used: String,
    pub revoke_href: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageLine {
    pub group: String,
    pub requests: String,
    pub errors: String,
    pub input_tokens: String,
    pub output_tokens: String,
    pub cost: String,
}

impl UsageLine {
    fn new(group: String, r: &UsageRow) -> Self {
        Self {
            group,
            requests: format::count(r.requests),
            errors: format::count(r.errors),
            input_tokens: format::count(r.input_tokens),
            output_tokens: format::count(r.output_tokens),
            cost: format::usd((r.cost_usd * 1e6).round() as i64),
        }
    }
}

/// A key just made: its secret, shown on this one response.
#[derive(Clone, PartialEq)]
pub struct NewKey {
    pub name: String,
    pub secret: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("name", &self.name)
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeysView {
    pub rows: Vec<KeyRow>,
    /// The list shows the first page only.
    pub more: bool,
    pub can_create: bool,
    /// Models a new key may be limited to (the project's).
    pub models: Vec<String>,
    pub max_days: Option<u64>,
}

/// What the caller may see and do on a project page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectRights {
    pub read_keys: bool,
    pub create_keys: bool,
    pub revoke_keys: bool,
    pub read_costs: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectView {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub archived: bool,
    pub settings: Vec<Field>,
    pub aws: Vec<Field>,
    pub tags: Vec<Field>,
    pub models: Vec<String>,
    pub conditions: Vec<ConditionRow>,
    pub keys: Option<KeysView>,
    pub usage_range: String,
    pub usage_by_model: Vec<UsageLine>,
    /// `None` for callers who may not see keys.
    pub usage_by_key: Option<Vec<UsageLine>>,
    pub usage_total: UsageLine,
    pub costs_href: Option<String>,
}

fn time_or(at: Option<DateTime<Utc>>, none: &str) -> String {
    at.map_or_else(|| none.to_owned(), format::time)
}

impl ProjectView {
    pub fn new(
        p: &Project,
        rights: ProjectRights,
        keys: Option<(&[ApiKey], bool)>,
        key_max_days: Option<u64>,
        by_model: &UsageReport,
        by_key: &UsageReport,
    ) -> Self {
        let field = |label: &str, value: String| Field {
            label: label.to_owned(),
            value,
        };
        let settings = vec![
            field("Environment", p.environment.to_string()),
            field("Team", p.team.to_string()),
            field("Region", p.region.to_string()),
            field("Data retention", p.data_retention.to_string()),
            field(
                "Monthly budget",
                p.monthly_budget_usd
                    .map_or_else(|| "none".into(), |b| format::usd(b.cents() * 10_000)),
            ),
            field(
                "Rate limits",
                match (p.rate_limits.rpm, p.rate_limits.tpm) {
                    (None, None) => "none".into(),
                    (rpm, tpm) => format!(
                        "{} requests/min, {} tokens/min",
                        rpm.map_or_else(|| "unlimited".into(), format::count),
                        tpm.map_or_else(|| "unlimited".into(), format::count)
                    ),
                },
            ),
            field("Status", p.status.to_string()),
            field(
                "Generation",
                format!("{} (applied: {})", p.generation, p.observed_generation),
            ),
            field("Created", format::time(p.created_at)),
            field("Updated", format::time(p.updated_at)),
        ];
        let aws = vec![
            field(
                "Mantle project",
                p.aws
                    .mantle_project_id
                    .clone()
                    .unwrap_or_else(|| "not yet created".into()),
            ),
            field(
                "IAM role",
                p.aws
                    .role_arn
                    .clone()
                    .unwrap_or_else(|| "not yet created".into()),
            ),
        ];
        let key_names: Vec<(String, String)> = keys
            .map(|(keys, _)| {
                keys.iter()
                    .map(|k| (k.id.to_string(), k.name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let keys = keys.map(|(keys, more)| KeysView {
            rows: keys
                .iter()
                .map(|k| KeyRow {
                    id: k.id.to_string(),
                    name: k.name.clone(),
                    owner: k.owner.clone(),
                    models: k.models.as_ref().map_or_else(
                        || "all the project's models".into(),
                        |m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", "),
                    ),
                    status: match k.status {
                        KeyStatus::Active => "active",
                        KeyStatus::Expired => "expired",
                        KeyStatus::Revoked => "revoked",
                    }
                    .into(),
                    expires: format::time(k.expires_at),
                    last_used: time_or(k.last_used_at, "never"),
                    revoke_href: (rights.revoke_keys && k.status == KeyStatus::Active)
                        .then(|| format!("/ui/projects/{}/keys/{}/revoke", p.id, k.id)),
                })
                .collect(),
            more,
            can_create: rights.create_keys && p.archived_at.is_none(),
            models: p.allowed_models.iter().map(|m| m.to_string()).collect(),
            max_days: key_max_days,
        });
        Self {
            id: p.id.to_string(),
            name: p.name.to_string(),
            display_name: p.display_name.clone(),
            archived: p.archived_at.is_some(),
            settings,
            aws,
            tags: p.tags.iter().map(|(k, v)| field(k, v.clone())).collect(),
            models: p.allowed_models.iter().map(|m| m.to_string()).collect(),
            conditions: p
                .conditions
                .iter()
                .map(|c| ConditionRow {
                    kind: format!("{:?}", c.kind),
                    status: format!("{:?}", c.status),
                    ok: c.status == ConditionStatus::True,
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    since: format::time(c.last_transition_time),
                })
                .collect(),
            keys,
            usage_range: format!(
                "{} – {}",
                format::time(by_model.from),
                format::time(by_model.to)
            ),
            usage_by_model: by_model
                .items
                .iter()
                .map(|r| UsageLine::new(r.group.clone(), r))
                .collect(),
            usage_by_key: rights.read_keys.then(|| {
                by_key
                    .items
                    .iter()
                    .map(|r| {
                        let name = key_names.iter().find(|(id, _)| *id == r.group);
                        let group = name
                            .map_or_else(|| r.group.clone(), |(id, name)| format!("{name} ({id})"));
                        UsageLine::new(group, r)
                    })
                    .collect()
            }),
            usage_total: UsageLine::new("Total".into(), &by_model.total),
            costs_href: rights
                .read_costs
                .then(|| format!("/ui/env/{}/costs", p.environment)),
        }
    }
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "project.html")]
pub struct ProjectPage {
    pub nav: Option<Nav>,
    pub view: ProjectView,
    pub new_key: Option<NewKey>,
    /// Why the key form was refused, shown above it.
    pub key_error: Option<String>,
    /// What happened to a form sent twice.
    pub key_notice: Option<String>,
    /// A fresh id for the key form: sent twice, it makes one key.
    pub form_id: String,
}

#[cfg(test)]
mod tests {
    //! Snapshots of the pages for fixed data: what finance and developers see,
    //! reviewed like code when it changes.
    use askama::Template;
    use chrono::{NaiveDate, TimeZone};
    use strata_core::domain::{Budget, ModelId, ProjectSlug, Region, TeamName};
    use strata_core::domain::{
        ChartSeries, Condition, ConditionStatus, ConditionType, CostDashboard, DataRetention,
        DayCost, Environment, MonthEnd, ProjectAws, ProjectCost, ProjectDayDrift, ProjectStatus,
        RateLimits, SeriesKind, TagBreakdown, TagSpend, UsageGroupBy,
    };
    use uuid::Uuid;

    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap_or_default()
    }

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn nav() -> Option<Nav> {
        Some(Nav {
            subject: "fin@example.com".into(),
            roles: "finance".into(),
            csrf: "csrf-token".into(),
            cost_environments: vec!["dev".into(), "staging".into(), "prod".into()],
            notifications: true,
            budgets: true,
        })
    }

    fn dashboard() -> CostDashboard {
        let id = uuid::Uuid::from_u128(1);
        CostDashboard {
            environment: Environment::Prod,
            today: day(4),
            from: day(1),
            to: day(5),
            month_actual_micros: 130_500_000,
            month_estimated_micros: 12_250_000,
            month_end: MonthEnd::Linear {
                amount_micros: 1_069_375_000,
                reason: "Cost Explorer gave no forecast: DataUnavailableException".into(),
            },
            budget_micros: Some(500_000_000),
            budgeted_month_micros: 120_000_000,
            range_micros: 130_500_000,
            untagged_micros: 4_500_000,
            projects: vec![
                ProjectCost {
                    id: Some(id),
                    name: "checkout".into(),
                    team: Some("payments".into()),
                    range_micros: 110_000_000,
                    month_micros: 120_000_000,
                    last_month_micros: 80_000_000,
                    budget_micros: Some(500_000_000),
                },
                ProjectCost {
                    id: None,
                    name: "<retired>".into(),
                    team: None,
                    range_micros: 16_000_000,
                    month_micros: 16_000_000,
                    last_month_micros: 0,
                    budget_micros: None,
                },
            ],
            series: vec![
                ChartSeries {
                    name: "checkout".into(),
                    kind: SeriesKind::Project,
                },
                ChartSeries {
                    name: "<retired>".into(),
                    kind: SeriesKind::Project,
                },
                ChartSeries {
                    name: "Other projects".into(),
                    kind: SeriesKind::OtherProjects,
                },
                ChartSeries {
                    name: "Untagged".into(),
                    kind: SeriesKind::Untagged,
                },
            ],
            days: vec![
                DayCost {
                    day: day(1),
                    by_series: vec![50_000_000, 8_000_000, 0, 2_000_000],
                    actual_micros: Some(60_000_000),
                    estimate_micros: None,
                    restatable: false,
                },
                DayCost {
                    day: day(2),
                    by_series: vec![30_000_000, 8_000_000, 0, 2_500_000],
                    actual_micros: Some(40_500_000),
                    estimate_micros: Some(39_000_000),
                    restatable: true,
                },
                DayCost {
                    day: day(3),
                    by_series: vec![30_000_000, 0, 0, 0],
                    actual_micros: Some(30_000_000),
                    estimate_micros: None,
                    restatable: true,
                },
                DayCost {
                    day: day(4),
                    by_series: vec![0, 0, 0, 0],
                    actual_micros: None,
                    estimate_micros: Some(12_250_000),
                    restatable: false,
                },
            ],
            breakdown: Some(TagBreakdown {
                key: "CostCenter".into(),
                values: vec![
                    TagSpend {
                        value: "cc-1234".into(),
                        micros: 100_000_000,
                    },
                    TagSpend {
                        value: String::new(),
                        micros: 30_500_000,
                    },
                ],
            }),
            tag_keys: vec!["CostCenter".into(), "Team".into()],
            last_refresh: Some(at(4, 6)),
        }
    }

    fn render(page: &impl Template) -> String {
        page.render().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn environment_costs_page() {
        let costs = dashboard();
        let page = EnvCostsPage {
            nav: nav(),
            chart: StackedChart::daily(&costs),
            view: EnvCostsView::new(&costs, "tag:CostCenter", true),
            drift: DriftView::new(&EstimateVsBill {
                environment: "prod".into(),
                from: costs.from,
                to: costs.to,
                threshold_percent: 5.0,
                days: vec![
                    ProjectDayDrift::compare(
                        (Uuid::nil(), "checkout".into()),
                        costs.from,
                        1_100_000,
                        Some((1_000_000, false)),
                        5.0,
                    ),
                    ProjectDayDrift::compare(
                        (Uuid::nil(), "<retired>".into()),
                        costs.from,
                        0,
                        Some((2_500_000, false)),
                        5.0,
                    ),
                    ProjectDayDrift::compare(
                        (Uuid::nil(), "search".into()),
                        costs.from,
                        1_000_000,
                        Some((1_010_000, false)),
                        5.0,
                    ),
                ],
                drifted: 1,
                bypassed: 1,
            }),
        };
        let html = render(&page);
        assert!(
            !html.contains("<retired>") && html.contains("&#60;retired&#62;"),
            "names are escaped"
        );
        insta::assert_snapshot!(html);
    }

    #[test]
    fn sign_in_page_with_an_error() {
        let page = SignInPage {
            nav: None,
            csrf: "csrf-token".into(),
            next: "/ui/env/prod/costs".into(),
            error: Some("The token was not accepted: token expired.".into()),
            sso_href: Some("/ui/signin/oidc?next=%2Fui%2Fenv%2Fprod%2Fcosts".into()),
        };
        insta::assert_snapshot!(render(&page));
    }

    fn project() -> Project {
        let parse = |r: Result<ModelId, String>| r.unwrap_or_else(|e| panic!("{e}"));
        Project {
            id: uuid::Uuid::from_u128(1),
            name: ProjectSlug::parse("checkout").unwrap_or_else(|e| panic!("{e}")),
            display_name: "Checkout service".into(),
            environment: Environment::Prod,
            team: TeamName::parse("payments").unwrap_or_else(|e| panic!("{e}")),
            region: Region::UsEast1,
            allowed_models: vec![
                parse(ModelId::parse("openai.gpt-oss-120b")),
                parse(ModelId::parse("openai.gpt-oss-20b")),
            ],
            tags: [("CostCenter".to_owned(), "cc-1234".to_owned())].into(),
            data_retention: DataRetention::Zdr,
            monthly_budget_usd: Some(Budget::from_cents(50_000)),
            rate_limits: RateLimits {
                rpm: Some(600),
                tpm: None,
            },
            resources: Vec::new(),
            status: ProjectStatus::Active,
            generation: 3,
            observed_generation: 3,
            created_at: at(1, 9),
            updated_at: at(2, 9),
            archived_at: None,
            aws: ProjectAws {
                mantle_project_id: Some("proj_abc".into()),
                mantle_project_arn: None,
                role_arn: Some("arn:aws:iam::123456789012:role/strata/prod-checkout".into()),
            },
            conditions: vec![Condition {
                kind: ConditionType::Ready,
                status: ConditionStatus::True,
                reason: "Reconciled".into(),
                message: "AWS matches the specification".into(),
                last_transition_time: at(2, 9),
                observed_generation: 3,
            }],
            resource_version: 1,
        }
    }

    fn usage(group_by: UsageGroupBy, group: &str) -> UsageReport {
        let row = |g: &str| UsageRow {
            group: g.into(),
            requests: 1200,
            errors: 3,
            input_tokens: 1_500_000,
            output_tokens: 250_000,
            cached_tokens: 0,
            cache_write_tokens: 0,
            cost_usd: 0.375,
            avg_latency_ms: Some(120.0),
        };
        UsageReport {
            project_id: uuid::Uuid::from_u128(1),
            from: at(1, 0),
            to: at(4, 12),
            group_by,
            items: vec![row(group)],
            total: row("total"),
        }
    }

    #[test]
    fn project_page_for_a_member_with_a_new_key() {
        let p = project();
        let key = ApiKey {
            id: uuid::Uuid::from_u128(7),
            project_id: p.id,
            name: "worker".into(),
            owner: "dev@example.com".into(),
            models: None,
            status: KeyStatus::Active,
            rate_limits: Default::default(),
            created_at: at(3, 9),
            expires_at: at(30, 9),
            revoked_at: None,
            revoked_by: None,
            last_used_at: Some(at(4, 8)),
        };
        let rights = ProjectRights {
            read_keys: true,
            create_keys: true,
            revoke_keys: true,
            read_costs: false,
        };
        let page = ProjectPage {
            nav: nav(),
            view: ProjectView::new(
                &p,
                rights,
                Some((std::slice::from_ref(&key), false)),
                Some(90),
                &usage(UsageGroupBy::Model, "openai.gpt-oss-120b"),
                &usage(UsageGroupBy::Key, &key.id.to_string()),
            ),
            new_key: Some(NewKey {
                name: "worker".into(),
                secret: "sk-strata-example".into(),
            }),
            key_error: None,
            key_notice: None,
            form_id: "form-id".into(),
        };
        insta::assert_snapshot!(render(&page));
    }

    #[test]
    fn project_page_for_finance_shows_no_keys() {
        let rights = ProjectRights {
            read_keys: false,
            create_keys: false,
            revoke_keys: false,
            read_costs: true,
        };
        let page = ProjectPage {
            nav: nav(),
            view: ProjectView::new(
                &project(),
                rights,
                None,
                Some(90),
                &usage(UsageGroupBy::Model, "openai.gpt-oss-120b"),
                &usage(UsageGroupBy::Key, "k"),
            ),
            new_key: None,
            key_error: None,
            key_notice: None,
            form_id: "form-id".into(),
        };
        let html = render(&page);
        assert!(!html.contains("Keys") && !html.contains("Usage by key"));
        insta::assert_snapshot!(html);
    }
}

/// `/ui/notifications`: where alerts go, how each destination's last delivery went,
/// and a test send for those who may change them.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "notifications.html")]
pub struct NotificationsPage {
    pub nav: Option<Nav>,
    pub can_test: bool,
    pub destinations: Vec<DestinationRow>,
    /// The test send just made: the destination's name and how it went.
    pub tested: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DestinationRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub target: String,
    pub events: String,
    pub environment: String,
    pub last_delivery: String,
    pub last_error: String,
}

impl DestinationRow {
    pub fn new(d: &strata_core::domain::Destination) -> Self {
        Self {
            id: d.id.to_string(),
            name: d.name.clone(),
            kind: d.kind.as_str().to_owned(),
            target: d.url.clone(),
            events: if d.events.is_empty() {
                "all".into()
            } else {
                d.events.join(", ")
            },
            environment: d.environment.clone().unwrap_or_else(|| "all".into()),
            last_delivery: d.last_delivery_at.map_or("—".into(), format::time),
            last_error: d.last_error.clone().unwrap_or_else(|| "—".into()),
        }
    }
}

/// `/ui/notifications/{id}`: one destination's delivery log.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "deliveries.html")]
pub struct DeliveriesPage {
    pub nav: Option<Nav>,
    pub name: String,
    pub rows: Vec<DeliveryRow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub created: String,
    pub kind: String,
    pub summary: String,
    pub status: String,
    pub attempts: String,
    pub last_error: String,
    pub next_attempt: String,
}

impl DeliveryRow {
    pub fn new(d: &strata_core::domain::Delivery) -> Self {
        Self {
            created: format::time(d.created_at),
            kind: d.kind.clone(),
            summary: d.summary.clone(),
            status: d.status.clone(),
            attempts: d.attempts.to_string(),
            last_error: match (&d.last_error, d.last_status) {
                (Some(e), _) => e.clone(),
                (None, Some(status)) => format!("accepted ({status})"),
                (None, None) => "—".into(),
            },
            next_attempt: d.next_attempt_at.map_or("—".into(), format::time),
        }
    }
}

/// `/ui/budgets`: every budget with its spend this period, and (for those who may
/// change them) a form to add one and controls to change or remove each.
#[derive(Debug, Template, WebTemplate)]
#[template(path = "budgets.html")]
pub struct BudgetsPage {
    pub nav: Option<Nav>,
    pub can_write: bool,
    pub budgets: Vec<BudgetRow>,
    /// What the last change did.
    pub notice: Option<String>,
    /// Why the last form was refused (its fields are kept in `form`).
    pub errors: Vec<String>,
    pub form: BudgetForm,
}

/// The add-a-budget form's values (empty, or as sent when refused).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct BudgetForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub period: String,
    #[serde(default)]
    pub amount_usd: String,
    #[serde(default)]
    pub enforcement: String,
}

impl Default for BudgetForm {
    fn default() -> Self {
        Self {
            csrf: String::new(),
            name: String::new(),
            scope: "team".into(),
            target: String::new(),
            period: "month".into(),
            amount_usd: String::new(),
            enforcement: "soft".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRow {
    pub id: String,
    pub name: String,
    /// e.g. `team payments`, `project checkout`, `tag CostCenter=cc-1234`.
    pub covers: String,
    pub period: String,
    /// `2026-11-30 – 2026-12-06`.
    pub dates: String,
    pub amount: String,
    /// The amount as typed in the change form (`250.00`).
    pub amount_value: String,
    pub spent: String,
    /// 0 to 100, for the meter.
    pub percent: f64,
    pub percent_text: String,
    pub over: bool,
    pub hard: bool,
}

impl BudgetRow {
    /// `target_name`: the project's name for a project's budget (its id otherwise).
    pub fn new(b: &strata_core::domain::BudgetView, target_name: Option<&str>) -> Self {
        let spent_micros = (b.spent_usd * 1e6).round() as i64;
        let amount_micros = (b.amount_usd * 1e6).round() as i64;
        let last = b.period_end - Duration::days(1);
        Self {
            id: b.id.to_string(),
            name: b.name.clone(),
            covers: format!("{} {}", b.scope, target_name.unwrap_or(&b.target)),
            period: b.period.as_str().to_owned(),
            dates: if last == b.period_start {
                b.period_start.to_string()
            } else {
                format!("{} – {last}", b.period_start)
            },
            amount: format::usd(amount_micros),
            amount_value: format!("{:.2}", b.amount_usd),
            spent: format::usd(spent_micros),
            percent: b.percent_used.clamp(0.0, 100.0),
            percent_text: format::percent(b.percent_used),
            over: b.percent_used >= 100.0,
            hard: b.enforcement == strata_core::domain::BudgetEnforcement::Hard,
        }
    }
}

#[cfg(test)]
mod budget_tests {
    use chrono::{NaiveDate, TimeZone, Utc};
    use strata_core::domain::{BudgetEnforcement, BudgetPeriod, BudgetScope, BudgetView};

    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap_or_default()
    }

    #[test]
    fn the_budgets_page_shows_spend_enforcement_and_the_forms() {
        let view = |n: u128, name: &str, scope, target: &str, period, spent, hard| BudgetView {
            id: uuid::Uuid::from_u128(n),
            name: name.into(),
            scope,
            target: target.into(),
            period,
            amount_usd: 250.0,
            enforcement: if hard {
                BudgetEnforcement::Hard
            } else {
                BudgetEnforcement::Soft
            },
            period_start: if period == BudgetPeriod::Week {
                day(23)
            } else {
                day(27)
            },
            period_end: if period == BudgetPeriod::Week {
                day(30)
            } else {
                day(28)
            },
            spent_usd: spent,
            percent_used: spent * 100.0 / 250.0,
            created_at: Utc
                .with_ymd_and_hms(2026, 11, 1, 9, 0, 0)
                .single()
                .unwrap_or_default(),
        };
        let team = view(
            1,
            "ml-weekly",
            BudgetScope::Team,
            "ml",
            BudgetPeriod::Week,
            300.0,
            true,
        );
        let project = view(
            2,
            "checkout-daily",
            BudgetScope::Project,
            "0192",
            BudgetPeriod::Day,
            12.5,
            false,
        );
        let page = BudgetsPage {
            nav: Some(Nav {
                subject: "admin@example.com".into(),
                roles: "platform-admin".into(),
                csrf: "csrf-token".into(),
                cost_environments: vec!["prod".into()],
                notifications: true,
                budgets: true,
            }),
            can_write: true,
            budgets: vec![
                BudgetRow::new(&team, None),
                BudgetRow::new(&project, Some("checkout")),
            ],
            notice: Some("Budget 'ml-weekly' added.".into()),
            errors: vec!["amount_usd: must be at least 0.01".into()],
            form: BudgetForm {
                name: "x".into(),
                amount_usd: "0".into(),
                ..BudgetForm::default()
            },
        };
        let html = page.render().unwrap_or_default();
        assert!(html.contains("team ml") && html.contains("project checkout"));
        assert!(html.contains("2026-11-23 – 2026-11-29"));
        assert!(html.contains("120.0 %"), "over budget shows the real share");
        insta::assert_snapshot!(html);
    }
}
