use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;
use crate::error::ApiError;

/// Liveness: the process answers.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the database answers within two seconds.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let ping = tokio::time::timeout(Duration::from_secs(2), state.services.store.ping()).await;
    let up = matches!(ping, Ok(Ok(())));
    state.metrics.database_up.set(i64::from(up));
    if up {
        Json(json!({"status": "ready", "database": "up"})).into_response()
    } else {
        let cause = match ping {
            Ok(Err(e)) => e.to_string(),
            _ => "timed out after 2 s".into(),
        };
        tracing::warn!(error.cause = %cause, "readiness check failed: database unreachable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is unreachable",
        )
        .into_response()
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
