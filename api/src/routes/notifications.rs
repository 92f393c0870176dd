//! Notification destinations: where budget and other alerts go, each with its delivery
//! log and a test send.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use strata_core::auth::Action;
use strata_core::domain::{CreatedDestination, Delivery, Destination, NewDestination};
use strata_core::services::DeliveryPolicy;
use utoipa::ToSchema;
use uuid::Uuid;

use super::authorize;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, Caller};

#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationList {
    pub items: Vec<Destination>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first, at most 200.
    pub items: Vec<Delivery>,
}

fn destination_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found("notification_destination", id))
}

/// Add a destination: a webhook (its signing secret is in this answer only) or a
/// Slack incoming webhook.
#[utoipa::path(
    post, path = "/notification-destinations", tag = "notifications",
    request_body = NewDestination,
    responses(
        (status = 201, body = CreatedDestination),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "Name taken", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_destination(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewDestination>,
) -> ApiResult<Response> {
    authorize(&state, &caller, Action::NotificationsWrite)?;
    let created = state
        .services
        .create_destination(&caller.actor(), &state.kek, &body)
        .await?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(created),
    )
        .into_response())
}

/// Every destination, with its last delivery's time and error.
#[utoipa::path(
    get, path = "/notification-destinations", tag = "notifications",
    responses(
        (status = 200, body = DestinationList),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_destinations(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<DestinationList>> {
    authorize(&state, &caller, Action::NotificationsRead)?;
    Ok(Json(DestinationList {
        items: state.services.list_destinations().await?,
    }))
}

/// Remove a destination and its delivery log.
#[utoipa::path(
    delete, path = "/notification-destinations/{id}", tag = "notifications",
    params(("id" = String, Path, description = "Destination id (UUID)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_destination(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    authorize(&state, &caller, Action::NotificationsWrite)?;
    let id = destination_id(&id)?;
    state
        .services
        .delete_destination(&caller.actor(), id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A destination's delivery log: each notification, its attempts, the last status
/// and error.
#[utoipa::path(
    get, path = "/notification-destinations/{id}/deliveries", tag = "notifications",
    params(("id" = String, Path, description = "Destination id (UUID)")),
    responses(
        (status = 200, body = DeliveryList),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DeliveryList>> {
    authorize(&state, &caller, Action::NotificationsRead)?;
    let id = destination_id(&id)?;
    Ok(Json(DeliveryList {
        items: state.services.deliveries(id, 200).await?,
    }))
}

/// Send a test notification now; the answer is its delivery (delivered, or the
/// receiver's status and error), also kept in the log.
#[utoipa::path(
    post, path = "/notification-destinations/{id}/test", tag = "notifications",
    params(("id" = String, Path, description = "Destination id (UUID)")),
    responses(
        (status = 200, body = Delivery),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn test_destination(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Delivery>> {
    authorize(&state, &caller, Action::NotificationsWrite)?;
    let id = destination_id(&id)?;
    Ok(Json(
        state
            .services
            .test_destination(
                &state.kek,
                &state.notify_http,
                &DeliveryPolicy::default(),
                id,
            )
            .await?,
    ))
}
