//! A project's metered usage through the proxy.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use strata_core::auth::Action;
use strata_core::domain::{BudgetStatus, UsageGroupBy, UsageReport};
use utoipa::IntoParams;

use super::{authorize_project, project_id};
use crate::app::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiQuery, Caller};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Start (RFC 3339, inclusive); default: the start of this month (UTC).
    pub from: Option<DateTime<Utc>>,
    /// End (RFC 3339, exclusive); default: now. At most 366 days after `from`.
    pub to: Option<DateTime<Utc>>,
    /// `model` (default), `key` or `day`.
    pub group_by: Option<UsageGroupBy>,
}

/// Requests, tokens, estimated cost and latency through the proxy, grouped.
#[utoipa::path(
    get, path = "/projects/{id}/usage", tag = "projects",
    params(("id" = String, Path, description = "Project id (UUID)"), UsageQuery),
    responses(
        (status = 200, body = UsageReport),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, description = "A bad range", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn project_usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> ApiResult<Json<UsageReport>> {
    let id = project_id(&id)?;
    authorize_project(&state, &caller, id, Action::ProjectsRead).await?;
    state.services.get_project(id).await?;
    Ok(Json(
        state
            .services
            .usage_report(
                id,
                query.from,
                query.to,
                query.group_by.unwrap_or(UsageGroupBy::Model),
            )
            .await?,
    ))
}

/// The monthly budget, this month's metered spend and the 50 / 80 / 100 % events.
#[utoipa::path(
    get, path = "/projects/{id}/budget", tag = "projects",
    params(("id" = String, Path, description = "Project id (UUID)")),
    responses(
        (status = 200, body = BudgetStatus),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn project_budget(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<BudgetStatus>> {
    let id = project_id(&id)?;
    authorize_project(&state, &caller, id, Action::ProjectsRead).await?;
    Ok(Json(state.services.budget_status(id).await?))
}
