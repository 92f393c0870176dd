//! `/ui/env/{environment}/costs` and its CSV downloads (finance and platform-admin).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Duration, NaiveDate};
use serde::Deserialize;
use strata_core::CoreError;
use strata_core::auth::Action;
use strata_core::domain::{CostDashboard, CostGroupBy, Environment};
use strata_web::chart::StackedChart;
use strata_web::pages::{DriftView, EnvCostsPage, EnvCostsView};

use super::session::UiCaller;
use super::{UiError, UiResult, respond};
use crate::app::AppState;
use crate::routes::costs::{csv_attachment, csv_download, csv_failed, focus_download};

/// The page's query: an inclusive range (date pickers) and the tag key to break
/// down (`project` or `tag:<key>`; the CSV also takes `day`).
#[derive(Debug, Deserialize)]
pub struct CostsPageQuery {
    #[serde(default, deserialize_with = "empty_as_none")]
    pub from: Option<NaiveDate>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub through: Option<NaiveDate>,
    pub group_by: Option<String>,
}

/// An empty date field (a cleared date picker) means "the default".
fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("'{t}' is not a date (YYYY-MM-DD)"))),
    }
}

struct Request {
    environment: Environment,
    group_by: CostGroupBy,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
}

fn parse(
    state: &AppState,
    ui: &UiCaller,
    environment: &str,
    query: Result<Query<CostsPageQuery>, QueryRejection>,
    allow_day: bool,
) -> UiResult<(Request, bool)> {
    if !state.rbac.allows(ui.principal(), Action::CostsRead) {
        return Err(UiError::new(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Costs are for finance and platform admins; your roles do not include 'costs:read'.",
        ));
    }
    let environment = Environment::parse(environment).map_err(|_| {
        UiError::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("There is no environment '{environment}' (dev, staging, prod)."),
        )
    })?;
    let Query(q) = query.map_err(|e| {
        UiError::new(
            StatusCode::BAD_REQUEST,
            "Cannot show this",
            format!("A filter is invalid: {}", e.body_text()),
        )
    })?;
    let group = q.group_by.as_deref().unwrap_or("project");
    let day = allow_day && group == "day";
    let group_by = if day {
        CostGroupBy::Project
    } else {
        match CostGroupBy::parse(group) {
            Ok(CostGroupBy::Environment) | Err(_) => {
                return Err(UiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Cannot show this",
                    "Break down by `project` or by a cost tag key (`tag:<key>`).",
                ));
            }
            Ok(g) => g,
        }
    };
    Ok((
        Request {
            environment,
            group_by,
            from: q.from,
            to: q.through.map(|t| t + Duration::days(1)),
        },
        day,
    ))
}

fn range_error(e: CoreError) -> UiError {
    match e {
        CoreError::Validation(errors) => UiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Cannot show this range",
            errors
                .iter()
                .map(|f| {
                    let field = if f.field == "to" { "through" } else { &f.field };
                    format!("{field}: {}", f.message.replace("`from`", "from"))
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        other => other.into(),
    }
}

async fn dashboard(state: &AppState, req: &Request) -> UiResult<CostDashboard> {
    state
        .services
        .cost_dashboard(req.environment, &req.group_by, req.from, req.to)
        .await
        .map_err(range_error)
}

pub async fn env_costs(
    State(state): State<AppState>,
    ui: UiCaller,
    Path(environment): Path<String>,
    query: Result<Query<CostsPageQuery>, QueryRejection>,
) -> Response {
    let nav = ui.nav(&state);
    let page = async {
        let (req, _) = parse(&state, &ui, &environment, query, false)?;
        let costs = dashboard(&state, &req).await?;
        let can_open_projects = state.rbac.allows(ui.principal(), Action::ProjectsRead);
        let drift = state
            .services
            .estimate_vs_bill(
                req.environment,
                costs.from,
                costs.to,
                state.http.cost_drift_pct,
            )
            .await
            .map_err(range_error)?;
        Ok::<_, UiError>(EnvCostsPage {
            nav: Some(nav.clone()),
            chart: StackedChart::daily(&costs),
            view: EnvCostsView::new(&costs, &req.group_by.as_param(), can_open_projects),
            drift: DriftView::new(&drift),
        })
    };
    respond(&state, &ui, page.await)
}

/// `group_by=project` or `tag:<key>`: the per-day detail of that table (the API's
/// CSV); `group_by=day`: the actuals-and-estimates table.
pub async fn env_costs_csv(
    State(state): State<AppState>,
    ui: UiCaller,
    Path(environment): Path<String>,
    query: Result<Query<CostsPageQuery>, QueryRejection>,
) -> Response {
    let csv = async {
        let (req, day) = parse(&state, &ui, &environment, query, true)?;
        if day {
            let costs = dashboard(&state, &req).await?;
            let body = costs.days_csv().map_err(csv_failed)?;
            return Ok::<_, UiError>(csv_attachment(
                &format!(
                    "costs-{}-day-{}-{}.csv",
                    req.environment, costs.from, costs.to
                ),
                body,
            ));
        }
        let report = state
            .services
            .cost_report(Some(req.environment), &req.group_by, req.from, req.to)
            .await
            .map_err(range_error)?;
        Ok(csv_download(&report)?)
    };
    respond(&state, &ui, csv.await)
}

/// The page's range as a FinOps FOCUS 1.0 dataset (the API's `focus.csv`).
pub async fn env_focus_csv(
    State(state): State<AppState>,
    ui: UiCaller,
    Path(environment): Path<String>,
    query: Result<Query<CostsPageQuery>, QueryRejection>,
) -> Response {
    let csv = async {
        let (req, _) = parse(&state, &ui, &environment, query, false)?;
        let costs = dashboard(&state, &req).await?;
        Ok::<_, UiError>(focus_download(&state, req.environment, costs.from, costs.to).await?)
    };
    respond(&state, &ui, csv.await)
}
