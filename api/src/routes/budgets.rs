//! Budgets at every level: a project's, a team's, an environment's, a cost-tag
//! value's or a key's spend per day, week or month, with threshold alerts.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use strata_core::auth::Action;
use strata_core::domain::{BudgetPatch, BudgetView, NewBudget};
use utoipa::ToSchema;
use uuid::Uuid;

use super::authorize;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, Caller};

#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetList {
    pub items: Vec<BudgetView>,
}

/// Add a budget; its thresholds (50, 80, 100 %) go to the notification destinations
/// that take `budget.threshold`.
#[utoipa::path(
    post, path = "/budgets", tag = "budgets",
    request_body = NewBudget,
    responses(
        (status = 201, body = BudgetView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "Name taken", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_budget(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewBudget>,
) -> ApiResult<(StatusCode, Json<BudgetView>)> {
    authorize(&state, &caller, Action::BudgetsWrite)?;
    let view = state.services.create_budget(&caller.actor(), &body).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Every budget with its current period's spend.
#[utoipa::path(
    get, path = "/budgets", tag = "budgets",
    responses(
        (status = 200, body = BudgetList),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_budgets(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<BudgetList>> {
    authorize(&state, &caller, Action::BudgetsRead)?;
    Ok(Json(BudgetList {
        items: state.services.list_budgets().await?,
    }))
}

/// Change a budget's period, amount or enforcement (in the proxy within a snapshot
/// poll; a counter already started keeps its spend).
#[utoipa::path(
    patch, path = "/budgets/{id}", tag = "budgets",
    params(("id" = String, Path, description = "Budget id (UUID)")),
    request_body = BudgetPatch,
    responses(
        (status = 200, body = BudgetView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn update_budget(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<BudgetPatch>,
) -> ApiResult<Json<BudgetView>> {
    authorize(&state, &caller, Action::BudgetsWrite)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("budget", &id))?;
    Ok(Json(
        state
            .services
            .update_budget(&caller.actor(), id, &patch)
            .await?,
    ))
}

/// Remove a budget.
#[utoipa::path(
    delete, path = "/budgets/{id}", tag = "budgets",
    params(("id" = String, Path, description = "Budget id (UUID)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_budget(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    authorize(&state, &caller, Action::BudgetsWrite)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("budget", &id))?;
    state.services.delete_budget(&caller.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
