//! Serving: the router of every route but chat's fast path (`front.rs`), the listener
//! and the serve loop with its shutdown, health, readiness, metrics, `/v1/models`, and
//! the envelope for errors made outside the handlers.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::access::{allowed_models, authorize};
use crate::auth::denial;

use crate::chat::chat_completions;
use crate::error::OpenAiError;
use crate::responses;
use crate::state::ProxyState;

/// Every route, the hot ones' fast paths (`front.rs`) too, so that a request reaching
/// the router for one is served the same.
pub(crate) fn routes(state: ProxyState) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(|State(state), request| chat_completions(state, request)),
        )
        .route(
            "/v1/responses",
            post(|State(state), request| responses::create_response(state, request)),
        )
        .route(
            "/v1/responses/{id}",
            get(responses::retrieve_response).delete(responses::delete_response),
        )
        .route(
            "/v1/responses/{id}/cancel",
            post(responses::cancel_response),
        )
        .route(
            "/v1/responses/{id}/input_items",
            get(responses::list_input_items),
        )
        .route("/v1/messages", post(crate::messages::create_message))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*model}", get(get_model))
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(unknown_route)
        // A plain function over the answer: no boxed future per request, as
        // `middleware::from_fn` would make.
        .layer(tower::util::MapResponseLayer::new(envelope_bare_errors))
        .with_state(state)
}

/// Connections the kernel may queue before the proxy accepts them. tokio's default
/// (1,024) overflowed when a thousand clients connected at once (bench/proxy.sh);
/// the kernel caps this at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener for the proxy, with a backlog sized for bursts of new connections.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves until `shutdown`, finishing in-flight requests and streams, then flushes
/// metered usage and responses' owners (retrying for up to 10 s each) and gives the
/// limits' unused slices back before returning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ProxyState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let follow = tokio::spawn(state.follower.clone().run(shutdown.clone()));
    let meter_stop = CancellationToken::new();
    let meter = state.meter.clone();
    let flush_every = Duration::from_secs(state.settings.config.usage_flush_secs.max(1));
    let stop = meter_stop.clone();
    let metering =
        tokio::spawn(async move { meter.run(flush_every, Duration::from_secs(10), stop).await });
    let background = tokio::spawn(responses::follow_background(
        state.clone(),
        shutdown.clone(),
    ));
    let served = crate::workers::serve_on_workers(
        listener,
        crate::front::Front::new(state.clone()),
        crate::workers::default_workers(),
        shutdown.clone(),
    )
    .await;
    let _ = background.await;
    responses::release_pending(&state).await;
    // Owners not yet with the control plane: other replicas need them after this one.
    if tokio::time::timeout(Duration::from_secs(10), state.responses.flush())
        .await
        .is_err()
    {
        tracing::error!("stopped before the control plane took every response's owner");
    }
    // Unused slices of the shared counters: other replicas may use them now.
    if tokio::time::timeout(Duration::from_secs(5), state.limiter.flush())
        .await
        .is_err()
    {
        tracing::warn!("stopped before giving every unused slice of the limits back to Redis");
    }
    meter_stop.cancel();
    let _ = metering.await;
    follow.abort();
    served?.finish().await
}

async fn readyz(State(state): State<ProxyState>) -> Response {
    let age = state.follower.age().map(|a| a.as_secs_f64());
    if state.follower.current().is_some() {
        axum::Json(json!({"status": "ready", "snapshot_age_seconds": age})).into_response()
    } else {
        let reason = match age {
            None => "no policy snapshot from the control plane yet",
            Some(_) => "the policy snapshot is older than the staleness limit",
        };
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                json!({"status": "not_ready", "reason": reason, "snapshot_age_seconds": age}),
            ),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<ProxyState>) -> Response {
    let m = &state.metrics;
    m.snapshot_age
        .set(state.follower.age().map_or(-1.0, |a| a.as_secs_f64()));
    m.snapshot_fresh
        .set(i64::from(state.follower.current().is_some()));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

async fn unknown_route(request: Request) -> OpenAiError {
    OpenAiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "unknown_url",
        format!(
            "Unknown request URL: {} {}. strata's proxy serves /v1/chat/completions, /v1/responses, /v1/messages and /v1/models.",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Errors made outside the handlers (405, body limits) get the envelope too.
fn envelope_bare_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "This path does not support that method.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "body_too_large",
            "The request body is larger than the proxy accepts.",
        ),
        _ => ("error", "The request failed."),
    };
    let kind = if status.is_server_error() {
        "api_error"
    } else {
        "invalid_request_error"
    };
    OpenAiError::new(status, kind, code, message).into_response()
}

fn model_entry(model: &strata_contract::SnapshotModel) -> Value {
    json!({"id": model.id.as_str(), "object": "model", "created": model.updated_at, "owned_by": model.provider})
}

/// A client of Anthropic's API (its SDKs send `anthropic-version` on every call): it
/// reads `/v1/models` in Anthropic's shape, listing the Messages API's models.
fn anthropic_client(headers: &HeaderMap) -> bool {
    headers.contains_key("anthropic-version")
}

/// A model as Anthropic's models API lists it.
fn anthropic_model_entry(model: &strata_contract::SnapshotModel) -> Value {
    let created = chrono::DateTime::from_timestamp(model.updated_at, 0).unwrap_or_default();
    // Every model in strata's catalog is callable: `active`.
    json!({"type": "model", "id": model.id.as_str(), "display_name": model.id.as_str(),
        "created_at": created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "lifecycle": "active"})
}

async fn list_models(State(state): State<ProxyState>, headers: HeaderMap) -> Response {
    let anthropic = anthropic_client(&headers);
    let listed =
        async {
            let claims = state.authenticate(&headers).await?;
            let policy = state.policy()?;
            let project = authorize(&claims, &policy, None).map_err(|d| denial(d, None))?;
            let models = allowed_models(&claims, project)
                .into_iter()
                .filter_map(|m| policy.models.get(m.as_str()));
            if !anthropic {
                let data: Vec<Value> = models.map(model_entry).collect();
                return Ok(axum::Json(json!({"object": "list", "data": data})).into_response());
            }
            let data: Vec<Value> = models
                .filter(|m| m.supports_messages)
                .map(anthropic_model_entry)
                .collect();
            let (first, last) = (
                data.first().map(|m| &m["id"]),
                data.last().map(|m| &m["id"]),
            );
            Ok(axum::Json(
                json!({"data": data, "has_more": false, "first_id": first, "last_id": last}),
            )
            .into_response())
        };
    in_callers_shape(anthropic, listed.await)
}

async fn get_model(
    State(state): State<ProxyState>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Response {
    let anthropic = anthropic_client(&headers);
    let found = async {
        let claims = state.authenticate(&headers).await?;
        let policy = state.policy()?;
        authorize(&claims, &policy, Some(&model)).map_err(|d| denial(d, Some(&model)))?;
        let entry = policy
            .models
            .get(&model)
            .filter(|m| !anthropic || m.supports_messages)
            .ok_or_else(|| OpenAiError::model_not_found(&model))?;
        Ok(axum::Json(if anthropic {
            anthropic_model_entry(entry)
        } else {
            model_entry(entry)
        })
        .into_response())
    };
    in_callers_shape(anthropic, found.await)
}

/// The answer, its error in Anthropic's envelope for Anthropic's clients.
fn in_callers_shape(anthropic: bool, result: Result<Response, OpenAiError>) -> Response {
    match result {
        Ok(r) => r,
        Err(e) if anthropic => crate::messages::anthropic_error(e),
        Err(e) => e.into_response(),
    }
}
