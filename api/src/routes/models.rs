use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use strata_core::CoreError;
use strata_core::auth::Action;
use strata_core::domain::{CatalogModel, ModelUpsert};
use utoipa::ToSchema;

use super::authorize;
use crate::app::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Caller};

/// The model catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub items: Vec<CatalogModel>,
}

/// List the model catalog.
#[utoipa::path(
    get, path = "/models", tag = "models",
    responses((status = 200, body = ModelList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_models(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<ModelList>> {
    authorize(&state, &caller, Action::ModelsRead)?;
    Ok(Json(ModelList {
        items: state.services.list_models().await?,
    }))
}

/// Get one catalog entry.
#[utoipa::path(
    get, path = "/models/{id}", tag = "models",
    params(("id" = String, Path, description = "Model id, e.g. openai.gpt-oss-120b")),
    responses((status = 200, body = CatalogModel), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<CatalogModel>> {
    authorize(&state, &caller, Action::ModelsRead)?;
    Ok(Json(state.services.get_model(&id).await?))
}

/// Create or replace a catalog entry (prices change; so do regions).
#[utoipa::path(
    put, path = "/models/{id}", tag = "models",
    request_body = ModelUpsert,
    params(("id" = String, Path, description = "Model id, e.g. openai.gpt-oss-120b")),
    responses(
        (status = 200, description = "Replaced (or unchanged)", body = CatalogModel),
        (status = 201, description = "Created", body = CatalogModel),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ModelUpsert>,
) -> ApiResult<Response> {
    authorize(&state, &caller, Action::ModelsWrite)?;
    let spec = body.validate().map_err(CoreError::Validation)?;
    let (model, created) = state.services.put_model(&caller.actor(), &id, spec).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(model)).into_response())
}
