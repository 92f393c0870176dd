//! Scoped API keys of a project, and the JWKS that verifies them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use strata_core::auth::Action;
use strata_core::domain::{ApiKey, CreatedApiKey, NewApiKey};
use strata_core::keys::Jwks;
use utoipa::{IntoParams, ToSchema};

use super::{authorize_project, project_id};
use crate::app::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Caller};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListKeysQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// One page of a project's keys (never their secrets).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub items: Vec<ApiKey>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Create a key for the project. The secret is in this response only.
#[utoipa::path(
    post, path = "/projects/{id}/keys", tag = "keys",
    request_body = NewApiKey,
    params(("id" = String, Path, description = "Project id (UUID)")),
    responses(
        (status = 201, description = "Created; `secret` is shown this once", body = CreatedApiKey),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Project archived", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "Invalid name, a model outside the project, or a lifetime over the environment's maximum", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewApiKey>,
) -> ApiResult<Response> {
    let id = project_id(&id)?;
    authorize_project(&state, &caller, id, Action::KeysCreate).await?;
    let created = state
        .services
        .create_api_key(&caller.actor(), &state.key_issuer, id, &body)
        .await?;
    // The secret must not linger in caches between the client and strata.
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(created),
    )
        .into_response())
}

/// List a project's keys, oldest first.
#[utoipa::path(
    get, path = "/projects/{id}/keys", tag = "keys",
    params(("id" = String, Path, description = "Project id (UUID)"), ListKeysQuery),
    responses(
        (status = 200, body = KeyList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, description = "Bad `cursor` or `limit`", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ListKeysQuery>,
) -> ApiResult<Json<KeyList>> {
    let id = project_id(&id)?;
    authorize_project(&state, &caller, id, Action::KeysRead).await?;
    state.services.get_project(id).await?;
    let page = state
        .services
        .list_api_keys(id, query.cursor.as_deref(), query.limit)
        .await?;
    Ok(Json(KeyList {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Get one key's metadata.
#[utoipa::path(
    get, path = "/projects/{id}/keys/{key_id}", tag = "keys",
    params(("id" = String, Path, description = "Project id (UUID)"), ("key_id" = String, Path, description = "Key id (UUID)")),
    responses(
        (status = 200, body = ApiKey),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<ApiKey>> {
    let id = project_id(&id)?;
    authorize_project(&state, &caller, id, Action::KeysRead).await?;
    Ok(Json(state.services.get_api_key(id, &key_id).await?))
}

/// Revoke a key: the proxy refuses it within a second. Revoking a revoked key
/// changes nothing.
#[utoipa::path(
    post, path = "/projects/{id}/keys/{key_id}/revoke", tag = "keys",
    params(("id" = String, Path, description = "Project id (UUID)"), ("key_id" = String, Path, description = "Key id (UUID)")),
    responses(
        (status = 200, body = ApiKey),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<ApiKey>> {
    let id = project_id(&id)?;
    authorize_project(&state, &caller, id, Action::KeysRevoke).await?;
    Ok(Json(
        state
            .services
            .revoke_api_key(&caller.actor(), id, &key_id)
            .await?,
    ))
}

/// The public keys that verify API keys (RFC 7517). Public: it holds no secret.
pub async fn jwks(State(state): State<AppState>) -> ApiResult<Response> {
    let jwks: Jwks =
        strata_core::keys::jwks(state.services.store.db(), state.services.clock.now()).await?;
    // Short: a rotation must reach verifiers quickly.
    Ok(([(header::CACHE_CONTROL, "public, max-age=60")], Json(jwks)).into_response())
}
