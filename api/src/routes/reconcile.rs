//! What the reconciler would do and what it found: a project's plan, and the
//! environment-wide reports (cost-allocation tags, tag coverage).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use strata_core::auth::Action;
use strata_core::domain::Environment;
use strata_reconciler::{
    COST_TAGS_REPORT, CostTagsReport, CoverageReport, Plan, coverage_report_name, stored_report,
};

use super::{authorize, authorize_project, project_id};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Caller;

/// The changes the next reconcile pass would make to the project's AWS resources.
///
/// Reads AWS (never writes): per resource, create / update / delete, with the
/// policy or tag documents before and after. Without AWS credentials the plan
/// assumes an empty account and says so (`aws_configured: false`).
#[utoipa::path(
    get, path = "/projects/{id}/plan", tag = "projects",
    params(("id" = String, Path, description = "Project id (UUID)")),
    responses(
        (status = 200, body = Plan),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Plan>> {
    let id = project_id(&id)?;
    authorize_project(&state, &caller, id, Action::ProjectsRead).await?;
    let project = state.services.get_project(id).await?;
    Ok(Json(state.reconciler.plan(&project).await))
}

fn not_ready(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "report_not_ready",
        format!(
            "no {what} report yet: the reconciler's environment pass has not run (it runs at start and once per resync interval)"
        ),
    )
}

/// The store's details go to the log, not to the client.
fn report_error(e: strata_reconciler::ReconcileError) -> ApiError {
    tracing::warn!(error.cause = %e, "cannot read a stored reconcile report");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "report_unavailable",
        "The stored report cannot be read right now; retry shortly.",
    )
}

/// Cost-allocation tag keys and whether Cost Explorer has them active.
#[utoipa::path(
    get, path = "/cost-allocation-tags", tag = "costs",
    responses(
        (status = 200, body = CostTagsReport),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "The first environment pass has not run yet", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cost_allocation_tags(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<CostTagsReport>> {
    authorize(&state, &caller, Action::CostsRead)?;
    stored_report(&state.services.store, COST_TAGS_REPORT)
        .await
        .map_err(report_error)?
        .map(Json)
        .ok_or_else(|| not_ready("cost-allocation tag"))
}

/// Tag coverage in one environment: resources tagged for a project that does not
/// own them, and owned resources missing a cost tag.
#[utoipa::path(
    get, path = "/environments/{environment}/tag-coverage", tag = "costs",
    params(("environment" = Environment, Path, description = "dev, staging or prod")),
    responses(
        (status = 200, body = CoverageReport),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown environment, or no report yet", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn tag_coverage(
    State(state): State<AppState>,
    caller: Caller,
    Path(environment): Path<String>,
) -> ApiResult<Json<CoverageReport>> {
    authorize(&state, &caller, Action::CostsRead)?;
    let environment = Environment::parse(&environment)
        .map_err(|_| ApiError::not_found("environment", &environment))?;
    stored_report(&state.services.store, &coverage_report_name(environment))
        .await
        .map_err(report_error)?
        .map(Json)
        .ok_or_else(|| not_ready("tag-coverage"))
}
