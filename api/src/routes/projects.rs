use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use strata_core::auth::{Action, ListScope};
use strata_core::domain::{Environment, NewProject, Project, ProjectPatch, ProjectStatus};
use strata_core::services::{CreateOutcome, IdempotencyKey, ProjectFilter};
use utoipa::{IntoParams, ToSchema};

use super::{authorize, authorize_project, project_id};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Caller};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListProjectsQuery {
    pub environment: Option<Environment>,
    /// Team slug.
    pub team: Option<String>,
    /// `key:value` — projects carrying this cost tag (keys and values may contain ':').
    #[param(pattern = "^[^:]+:.*$")]
    pub tag: Option<String>,
    pub status: Option<ProjectStatus>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

/// One page of projects.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectList {
    pub items: Vec<Project>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

fn with_etag(status: StatusCode, project: &Project) -> Response {
    let mut response = (status, Json(project)).into_response();
    if let Ok(v) = HeaderValue::from_str(&project.etag()) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> ApiResult<Option<&'a str>> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_header",
                    format!("the {name} header must be visible ASCII"),
                )
            })
        })
        .transpose()
}

/// Create a project.
///
/// Send `Idempotency-Key` to make retries safe: the same key with the same body
/// returns the first response; with a different body, 422.
#[utoipa::path(
    post, path = "/projects", tag = "projects",
    request_body = NewProject,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe (1–255 visible ASCII characters).")),
    responses(
        (status = 201, description = "Created (or replayed: see `Idempotent-Replayed`)", body = Project,
            headers(("ETag" = String, description = "Version for If-Match"), ("Location" = String))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "Name taken in this environment", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "Invalid fields, or Idempotency-Key reused with another body", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_project(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(input): ApiJson<NewProject>,
) -> ApiResult<Response> {
    authorize(&state, &caller, Action::ProjectsCreate)?;
    let key = header_str(&headers, "idempotency-key")?
        .map(IdempotencyKey::parse)
        .transpose()?;
    match state
        .services
        .create_project(&caller.actor(), &input, key.as_ref())
        .await?
    {
        CreateOutcome::Created(project) => {
            let mut response = with_etag(StatusCode::CREATED, &project);
            if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/projects/{}", project.id)) {
                response.headers_mut().insert(header::LOCATION, v);
            }
            Ok(response)
        }
        CreateOutcome::Replayed { status, body, etag } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED);
            let location = body
                .get("id")
                .and_then(|v| v.as_str())
                .map(|id| format!("/api/v1/projects/{id}"));
            let mut response = (status, Json(body)).into_response();
            let h = response.headers_mut();
            h.insert("idempotent-replayed", HeaderValue::from_static("true"));
            if let Some(v) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
                h.insert(header::ETAG, v);
            }
            if let Some(v) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                h.insert(header::LOCATION, v);
            }
            Ok(response)
        }
    }
}

/// List the projects the caller may see.
#[utoipa::path(
    get, path = "/projects", tag = "projects",
    params(ListProjectsQuery),
    responses(
        (status = 200, body = ProjectList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_projects(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListProjectsQuery>,
) -> ApiResult<Json<ProjectList>> {
    let member = match state.rbac.list_scope(&caller.principal) {
        ListScope::All => None,
        ListScope::MemberOf(subject) => Some(subject),
        ListScope::Nothing => return Err(ApiError::forbidden(Action::ProjectsRead.as_str())),
    };
    let filter = ProjectFilter {
        environment: q.environment,
        team: q.team,
        tag: q.tag,
        status: q.status,
        member,
    };
    let page = state
        .services
        .list_projects(&filter, q.cursor.as_deref(), q.limit)
        .await?;
    Ok(Json(ProjectList {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Get one project.
#[utoipa::path(
    get, path = "/projects/{id}", tag = "projects",
    params(("id" = String, Path, description = "Project id (UUID)")),
    responses(
        (status = 200, body = Project, headers(("ETag" = String))),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = project_id(&id)?;
    authorize_project(&state, &caller, id, Action::ProjectsRead).await?;
    let project = state.services.get_project(id).await?;
    Ok(with_etag(StatusCode::OK, &project))
}

/// Change a project (JSON merge patch).
///
/// Send the `ETag` you read as `If-Match` to make sure nobody changed the project in
/// between (412 if they did).
#[utoipa::path(
    patch, path = "/projects/{id}", tag = "projects",
    request_body(content = ProjectPatch, content_type = "application/merge-patch+json"),
    params(
        ("id" = String, Path, description = "Project id (UUID)"),
        ("If-Match" = Option<String>, Header, description = "ETag from a previous read"),
    ),
    responses(
        (status = 200, body = Project, headers(("ETag" = String))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Project archived", body = ErrorBody),
        (status = 412, description = "If-Match does not match", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn update_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<ProjectPatch>,
) -> ApiResult<Response> {
    let id = project_id(&id)?;
    authorize_project(&state, &caller, id, Action::ProjectsUpdate).await?;
    let if_match = header_str(&headers, "if-match")?;
    if if_match.is_some_and(|v| v.trim().is_empty()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            "If-Match is empty; send the ETag you read, e.g. \"3\"",
        ));
    }
    let project = state
        .services
        .update_project(&caller.actor(), id, &patch, if_match)
        .await?;
    Ok(with_etag(StatusCode::OK, &project))
}

/// Archive a project: it becomes read-only and the reconciler removes what it owns on
/// AWS. Archiving an archived project changes nothing.
#[utoipa::path(
    post, path = "/projects/{id}/archive", tag = "projects",
    params(("id" = String, Path, description = "Project id (UUID)")),
    responses(
        (status = 200, body = Project, headers(("ETag" = String))),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn archive_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = project_id(&id)?;
    authorize_project(&state, &caller, id, Action::ProjectsArchive).await?;
    let project = state.services.archive_project(&caller.actor(), id).await?;
    Ok(with_etag(StatusCode::OK, &project))
}
