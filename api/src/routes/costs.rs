//! Cost Explorer actuals by environment and tag, for finance.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::Deserialize;
use strata_core::CoreError;
use strata_core::auth::Action;
use strata_core::domain::{CostDashboard, CostGroupBy, CostReport, Environment, EstimateVsBill};
use utoipa::IntoParams;

use super::authorize;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiQuery, Caller};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CostQuery {
    /// One environment; default: every environment.
    pub environment: Option<Environment>,
    /// `project` (default), `environment`, or `tag:<key>` for a key in
    /// `STRATA_COST_TAG_KEYS` (e.g. `tag:CostCenter`).
    pub group_by: Option<String>,
    /// First day (`YYYY-MM-DD`, inclusive); default: the first of this month (UTC).
    pub from: Option<NaiveDate>,
    /// Last day (exclusive); default: tomorrow, so today is included. At most 732
    /// days after `from`.
    pub to: Option<NaiveDate>,
}

/// Cost Explorer actuals per day, grouped, with untagged cost as its own group.
/// Served from strata's store: reading it never calls Cost Explorer.
#[utoipa::path(
    get, path = "/costs", tag = "costs",
    params(CostQuery),
    responses(
        (status = 200, body = CostReport),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, description = "A bad `group_by` or range", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cost_report(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<CostQuery>,
) -> ApiResult<Json<CostReport>> {
    Ok(Json(report(&state, &caller, q).await?))
}

/// The same report as CSV, one row per group and day
/// (`day,group,untagged,project_name,amount_usd,estimated`), for spreadsheets; cells a
/// spreadsheet would run as formulas are prefixed with `'`.
#[utoipa::path(
    get, path = "/costs.csv", tag = "costs",
    params(CostQuery),
    responses(
        (status = 200, content_type = "text/csv", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, description = "A bad `group_by` or range", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cost_report_csv(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<CostQuery>,
) -> ApiResult<Response> {
    let report = report(&state, &caller, q).await?;
    csv_download(&report)
}

/// A cost report as a CSV attachment named for its environment, grouping and range.
pub(crate) fn csv_download(report: &CostReport) -> ApiResult<Response> {
    let body = report.to_csv().map_err(csv_failed)?;
    Ok(csv_attachment(
        &format!(
            "costs-{}-{}-{}-{}.csv",
            report.environment.as_deref().unwrap_or("all"),
            report.group_by,
            report.from,
            report.to
        ),
        body,
    ))
}

pub(crate) fn csv_failed(e: String) -> ApiError {
    tracing::error!(error.cause = %e, "cannot write a cost table as CSV");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "The report could not be written as CSV.",
    )
}

/// `body` as a download; the name is reduced to letters, digits, `.` and `-`.
pub(crate) fn csv_attachment(name: &str, body: Vec<u8>) -> Response {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DashboardQuery {
    /// `project` (default) or `tag:<key>` for a breakdown by that cost tag key.
    pub group_by: Option<String>,
    /// First day (`YYYY-MM-DD`, inclusive); default: the first of this month (UTC).
    pub from: Option<NaiveDate>,
    /// Last day (exclusive); default: tomorrow. At most 732 days after `from`.
    pub to: Option<NaiveDate>,
}

/// An environment's costs, as its page shows them.
///
/// The figures of `/ui/env/{environment}/costs`: month to date (Cost Explorer actuals, plus the proxy's metered estimate for days
/// Cost Explorer has not reported), month end (Cost Explorer's forecast, or a linear
/// projection with the reason), budgets, spend per project with last month's same
/// days, cost per day by chart series with actual and estimate side by side, and a
/// tag key's breakdown. Read from strata's store, never from Cost Explorer.
#[utoipa::path(
    get, path = "/environments/{environment}/costs", tag = "costs",
    params(("environment" = String, Path, description = "`dev`, `staging` or `prod`"), DashboardQuery),
    responses(
        (status = 200, body = CostDashboard),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 422, description = "A bad `group_by` or range", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn environment_costs(
    State(state): State<AppState>,
    caller: Caller,
    Path(environment): Path<String>,
    ApiQuery(q): ApiQuery<DashboardQuery>,
) -> ApiResult<Json<CostDashboard>> {
    authorize(&state, &caller, Action::CostsRead)?;
    let environment = Environment::parse(&environment)
        .map_err(|_| ApiError::not_found("environment", &environment))?;
    let group_by = match q.group_by.as_deref() {
        None => CostGroupBy::Project,
        Some(g) => match CostGroupBy::parse(g) {
            Ok(CostGroupBy::Environment) | Err(_) => {
                return Err(
                    CoreError::invalid("group_by", "must be `project` or `tag:<tag key>`").into(),
                );
            }
            Ok(g) => g,
        },
    };
    Ok(Json(
        state
            .services
            .cost_dashboard(environment, &group_by, q.from, q.to)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DriftQuery {
    /// First day (`YYYY-MM-DD`, inclusive); default: 30 days ago (UTC).
    pub from: Option<NaiveDate>,
    /// Last day (exclusive); default: tomorrow. At most 366 days after `from`.
    pub to: Option<NaiveDate>,
}

/// The proxy's metered estimate next to Cost Explorer's bill, per project and day: the
/// difference in percent, flagged above `STRATA_COST_DRIFT_PCT` (not on days Cost
/// Explorer may still restate); billed spend on a day the proxy metered nothing is
/// flagged as having bypassed the proxy.
#[utoipa::path(
    get, path = "/environments/{environment}/estimate-vs-bill", tag = "costs",
    params(("environment" = String, Path, description = "`dev`, `staging` or `prod`"), DriftQuery),
    responses(
        (status = 200, body = EstimateVsBill),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 422, description = "A bad range", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn estimate_vs_bill(
    State(state): State<AppState>,
    caller: Caller,
    Path(environment): Path<String>,
    ApiQuery(q): ApiQuery<DriftQuery>,
) -> ApiResult<Json<EstimateVsBill>> {
    authorize(&state, &caller, Action::CostsRead)?;
    let environment = Environment::parse(&environment)
        .map_err(|_| ApiError::not_found("environment", &environment))?;
    let (from, to) = drift_range(&state, q.from, q.to);
    Ok(Json(
        state
            .services
            .estimate_vs_bill(environment, from, to, state.http.cost_drift_pct)
            .await?,
    ))
}

/// An environment's cost as a FinOps FOCUS 1.0 dataset (CSV): per project and day,
/// Cost Explorer's actuals and, for days it has not reported, the proxy's metered
/// estimates; `x_Source` and `x_Estimated` tell them apart. Default: the last 30 days.
#[utoipa::path(
    get, path = "/environments/{environment}/focus.csv", tag = "costs",
    params(("environment" = String, Path, description = "`dev`, `staging` or `prod`"), DriftQuery),
    responses(
        (status = 200, content_type = "text/csv", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such environment", body = ErrorBody),
        (status = 422, description = "A bad range", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn focus_csv(
    State(state): State<AppState>,
    caller: Caller,
    Path(environment): Path<String>,
    ApiQuery(q): ApiQuery<DriftQuery>,
) -> ApiResult<Response> {
    authorize(&state, &caller, Action::CostsRead)?;
    let environment = Environment::parse(&environment)
        .map_err(|_| ApiError::not_found("environment", &environment))?;
    let (from, to) = drift_range(&state, q.from, q.to);
    focus_download(&state, environment, from, to).await
}

/// The FOCUS dataset of an environment's range as a CSV attachment.
pub(crate) async fn focus_download(
    state: &AppState,
    environment: Environment,
    from: NaiveDate,
    to: NaiveDate,
) -> ApiResult<Response> {
    let rows = state.services.focus_rows(environment, from, to).await?;
    let body = strata_core::domain::focus_csv(&rows).map_err(csv_failed)?;
    Ok(csv_attachment(
        &format!("focus-1.0-{}-{from}-{to}.csv", environment.as_str()),
        body,
    ))
}

/// The range a comparison covers when the caller names none: the last 30 days.
pub(crate) fn drift_range(
    state: &AppState,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> (NaiveDate, NaiveDate) {
    let today = state.services.clock.now().date_naive();
    let to = to.unwrap_or(today + chrono::Duration::days(1));
    (from.unwrap_or(to - chrono::Duration::days(30)), to)
}

async fn report(state: &AppState, caller: &Caller, q: CostQuery) -> ApiResult<CostReport> {
    authorize(state, caller, Action::CostsRead)?;
    let group_by = match q.group_by.as_deref() {
        None => CostGroupBy::Project,
        Some(g) => CostGroupBy::parse(g).map_err(|e| CoreError::invalid("group_by", e))?,
    };
    Ok(state
        .services
        .cost_report(q.environment, &group_by, q.from, q.to)
        .await?)
}
