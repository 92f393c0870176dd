//! Cross-cutting request handling: metrics, and the error envelope for responses
//! produced outside the handlers (unknown routes, wrong methods, timeouts).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;
use crate::metrics::{RequestLabels, RouteLabels};

pub async fn record_metrics(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let labels = RouteLabels {
        method: method.clone(),
        route: route.clone(),
    };
    state
        .metrics
        .durations
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Refuses a path or query string holding NUL (`%00`) on every route (API, pages, the
/// OpenAI shapes): Postgres cannot store or compare NUL in text, so it must never get
/// that far.
pub async fn refuse_nul_queries(request: Request, next: Next) -> Response {
    let has_nul = |text: &str| text.to_ascii_lowercase().contains("%00");
    let nul = has_nul(request.uri().path()) || request.uri().query().is_some_and(has_nul);
    if nul {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the path and query parameters must not contain NUL characters (%00)",
        )
        .into_response();
    }
    next.run(request).await
}

/// Gives error responses that carry no JSON body (axum's 405, tower-http's timeout)
/// the envelope, so every error a client sees has the same shape.
pub async fn envelope_bare_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    // JSON errors are already enveloped; HTML ones are the pages' own error pages.
    let has_body = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || has_body {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this path does not support that method".to_owned(),
        ),
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => (
            "request_timeout",
            "the request took too long; retry shortly".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "body_too_large",
            "the request body is larger than the server accepts".to_owned(),
        ),
        StatusCode::NOT_FOUND => (
            "not_found",
            "no such endpoint; see /api/v1/openapi.json".to_owned(),
        ),
        s => (
            "error",
            s.canonical_reason().unwrap_or("error").to_lowercase(),
        ),
    };
    let mut rebuilt = ApiError::new(status, code, message).into_response();
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rebuilt.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rebuilt
}

pub async fn fallback() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see /api/v1/openapi.json",
    )
}
