//! The Responses API through the proxy: `POST /v1/responses` (plain, streamed,
//! background), `GET /v1/responses/{id}` (also as a replayed stream), `DELETE`,
//! `POST …/cancel` and `GET …/input_items`, routed, signed and normalised like chat.
//!
//! Rules on top of Mantle's: only models the catalog marks as serving the Responses
//! API; for a zero-data-retention project, AWS's rule for Mantle mode `none` applied
//! before Mantle does (`store=false` only, no `background`); and tenant isolation:
//! strata records which project created each response id (`crate::registry`), and an
//! id (or a `previous_response_id`) of another project, or one strata never saw, is a
//! 404 that never reaches Mantle.

mod events;
mod follower;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures_util::StreamExt;
use serde::Deserialize;
use strata_contract::{
    DataRetention, ResponseRecord, SnapshotModel, SnapshotProject, validate_response_id,
};

pub use follower::{follow_background, release_pending};

use self::events::ResponsesSse;
use crate::access::authorize;
use crate::auth::denial;
use crate::billing::{Billing, Seen, answer};
use crate::error::OpenAiError;
use crate::forward::{
    UpstreamCall, UpstreamPath, send_upstream, transport_failure, upstream_failure,
};
use crate::limits::{Admission, Demand, Limits, Prices, estimate_input_tokens, prices};
use crate::normalize::{
    request_fields, required_model, rewrite_created, rewrite_response, unsupported_api,
};
use crate::registry::RegistryError;
use crate::state::{Pending, ProxyState};
use crate::upstream::{UpstreamError, UpstreamResponse};

pub(crate) const CREATE_ROUTE: &str = "responses";
const RETRIEVE_ROUTE: &str = "responses_retrieve";
const DELETE_ROUTE: &str = "responses_delete";
const CANCEL_ROUTE: &str = "responses_cancel";
const INPUT_ITEMS_ROUTE: &str = "responses_input_items";

/// What the proxy reads of a create request.
#[derive(Deserialize)]
struct CreateFields<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    stream: Option<bool>,
    background: Option<bool>,
    store: Option<bool>,
    #[serde(borrow)]
    previous_response_id: Option<Cow<'a, str>>,
    max_output_tokens: Option<u64>,
}

fn response_not_found(id: &str, param: Option<&str>) -> OpenAiError {
    let e = OpenAiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "response_not_found",
        format!("No response with id '{}' found.", printable(id)),
    );
    match param {
        Some(p) => e.param(p),
        None => e,
    }
}

/// An id as it may appear in a message: only if it is a well-formed id.
fn printable(id: &str) -> &str {
    if validate_response_id(id).is_ok() {
        id
    } else {
        "(malformed)"
    }
}

fn registry_unavailable() -> OpenAiError {
    OpenAiError::unavailable(
        "responses_unavailable",
        "The proxy cannot check this response's owner with the control plane now; retry shortly.",
    )
}

/// AWS's rule for a project whose Mantle data-retention mode is `none` (zdr): the
/// Responses API is allowed with `store=false` (its default there) and without
/// `background`; the proxy refuses the rest before Mantle does, saying why.
fn check_retention(
    project: &SnapshotProject,
    store: Option<bool>,
    background: bool,
) -> Result<(), OpenAiError> {
    if project.data_retention != DataRetention::Zdr {
        return Ok(());
    }
    let refuse = |param: &str, what: &str| {
        Err(OpenAiError::invalid(
            param,
            "zero_data_retention",
            format!(
                "This project has zero data retention (Mantle mode 'none'): {what}. Send store=false (the default here) without background, or use Chat Completions."
            ),
        ))
    };
    if store == Some(true) {
        return refuse(
            "store",
            "responses cannot be stored, so store=true is refused",
        );
    }
    if background {
        return refuse(
            "background",
            "background mode needs a stored response and is refused",
        );
    }
    Ok(())
}

/// Checks that response `id` belongs to `project` (anything else is a 404); `Ok` is
/// the model it was created with.
async fn check_owner(
    state: &ProxyState,
    project: &SnapshotProject,
    id: &str,
    param: Option<&str>,
) -> Result<Arc<str>, OpenAiError> {
    if validate_response_id(id).is_err() {
        return Err(response_not_found(id, param));
    }
    match state.responses.owner(id).await {
        Ok(owner) if owner.project == project.id => Ok(owner.model),
        Ok(_) | Err(RegistryError::Unknown) => Err(response_not_found(id, param)),
        Err(e @ (RegistryError::Unavailable(_) | RegistryError::Invalid(_))) => {
            tracing::warn!(error.cause = %e, "cannot look a response's owner up");
            Err(registry_unavailable())
        }
    }
}

fn model_for_responses<'a>(
    policy: &'a crate::Policy,
    name: &str,
) -> Result<&'a SnapshotModel, OpenAiError> {
    let model = policy
        .models
        .get(name)
        .ok_or_else(|| OpenAiError::model_not_found(name))?;
    if !model.supports_responses {
        return Err(unsupported_api(model, "Responses"));
    }
    Ok(model)
}

pub async fn create_response(state: ProxyState, request: Request) -> Response {
    let started = Instant::now();
    let mut seen = Seen::default();
    let result = create(&state, request, started, &mut seen).await;
    answer(&state, CREATE_ROUTE, seen, result)
}

async fn create(
    state: &ProxyState,
    client: Request,
    started: Instant,
    seen: &mut Seen,
) -> Result<Response, OpenAiError> {
    let (claims, policy, bytes) = state.begin(client, seen).await?;
    let fields: CreateFields = request_fields(&bytes)?;
    let model_name = required_model(
        fields.model.as_deref(),
        "You must provide a model parameter (a string).",
    )?;
    let project =
        authorize(&claims, &policy, Some(&model_name)).map_err(|d| denial(d, Some(&model_name)))?;
    let model = model_for_responses(&policy, &model_name)?;
    seen.model = Some(model_name.clone());
    let stream = fields.stream.unwrap_or(false);
    let background = fields.background.unwrap_or(false);
    // Before the owner lookup: a refused request costs no call to the control plane.
    check_retention(project, fields.store, background)?;
    // An unstored response can never be retrieved, continued or cancelled, so it has
    // no owner to record (Mantle's default: stored unless the project keeps nothing).
    let stored = fields
        .store
        .unwrap_or(project.data_retention != DataRetention::Zdr)
        || background;
    if let Some(previous) = fields.previous_response_id.as_deref() {
        check_owner(state, project, previous, Some("previous_response_id")).await?;
    }
    let limits = Limits::of(
        project,
        claims.sub,
        claims.rate_limits,
        policy.budgets_for(project.id, claims.sub),
    );
    let demand = Demand::priced(
        prices(model),
        estimate_input_tokens(bytes.len()),
        fields
            .max_output_tokens
            .unwrap_or(state.settings.config.default_max_tokens),
    );
    let admission = state
        .limiter
        .admit(&limits, demand, Utc::now())
        .await
        .inspect_err(|e| state.metrics.refused(project.id, e))?;
    let Admission {
        reservation,
        headers: limit_headers,
    } = admission;
    let new = NewResponse {
        state: state.clone(),
        project: project.id,
        key: claims.sub,
        model: model_name.clone(),
        prices: prices(model),
        started,
    };
    // Background responses are metered when they finish (by the replica following
    // them); the others like chat, when the answer ends.
    let (mut billing, mut held) = if background {
        (None, reservation)
    } else {
        (Some(new.billing(reservation)), None)
    };
    // The answer's success is counted on the billing's handles (no second lookup).
    seen.handles = billing.as_ref().map(|b| b.metrics.clone());
    let call = UpstreamCall {
        method: reqwest::Method::POST,
        prefix: model.mantle_path,
        path: UpstreamPath::Fixed("/responses"),
        body: bytes,
        stream,
        headers: &[],
    };
    let fail =
        |billing: &mut Option<Billing>, held: &mut Option<crate::limits::Reservation>, kind| {
            if let Some(b) = billing.as_mut() {
                b.failed(kind);
            }
            if let Some(r) = held.take() {
                state.limiter.settle(r, Demand::default());
            }
        };
    let response = match send_upstream(state, project, call).await {
        Ok(r) => r,
        Err((kind, e)) => {
            fail(&mut billing, &mut held, kind);
            return Err(e);
        }
    };
    if !response.status().is_success() {
        let e = upstream_failure(response).await;
        let kind = if e.status.is_server_error() {
            "status_5xx"
        } else {
            "status_4xx"
        };
        fail(&mut billing, &mut held, kind);
        return Err(e);
    }
    if stream {
        let mut answer = relay(
            response,
            Relay {
                new: stored.then_some(new),
                background,
                billing,
                held,
            },
        );
        answer.headers_mut().extend(limit_headers);
        return Ok(answer);
    }
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            let (kind, e) = transport_failure(state, &e);
            fail(&mut billing, &mut held, kind);
            return Err(e);
        }
    };
    let Some(created) = rewrite_created(body) else {
        fail(&mut billing, &mut held, "invalid_body");
        return Err(invalid_upstream_body());
    };
    let status = created.status.as_deref().unwrap_or("completed");
    if stored {
        new.register(created.id, background, status, held).await;
    }
    if let Some(b) = billing.as_mut() {
        b.record(created.usage, false);
    }
    let mut answer = ([(header::CONTENT_TYPE, "application/json")], created.body).into_response();
    answer.headers_mut().extend(limit_headers);
    Ok(answer)
}

fn invalid_upstream_body() -> OpenAiError {
    OpenAiError::new(
        StatusCode::BAD_GATEWAY,
        "api_error",
        "upstream_invalid_response",
        "Mantle answered with a body that is not a response object.",
    )
}

/// A response being created: what its ownership record and its metering need.
struct NewResponse {
    state: ProxyState,
    project: uuid::Uuid,
    key: uuid::Uuid,
    model: String,
    prices: Prices,
    started: Instant,
}

impl NewResponse {
    fn billing(&self, reservation: Option<crate::limits::Reservation>) -> Billing {
        Billing {
            state: self.state.clone(),
            project: self.project,
            key: self.key,
            model: self.model.clone(),
            metrics: self
                .state
                .metrics
                .for_model(CREATE_ROUTE, self.project, &self.model),
            at: Utc::now(),
            started: self.started,
            recorded: false,
            reservation,
            prices: self.prices,
        }
    }

    /// Records the response's owner (before its id reaches the client); a background
    /// response is also followed by this replica until it finishes, holding its
    /// reservation.
    async fn register(
        &self,
        id: String,
        background: bool,
        status: &str,
        held: Option<crate::limits::Reservation>,
    ) {
        if background {
            self.state.pending_background(
                &id,
                Pending {
                    reservation: held,
                    prices: self.prices,
                    started: self.started,
                },
            );
        }
        let record = ResponseRecord {
            id,
            project_id: self.project,
            key_id: self.key,
            model: self.model.clone(),
            background,
            status: status.chars().take(32).collect(),
            metered: !background,
            claimed_by: background.then(|| self.state.instance.clone()),
        };
        if let Err(e) = self.state.responses.record(&record).await {
            // The answer goes out anyway (Mantle has done the work); the record stays
            // queued, so other replicas learn the id and a background response is
            // metered once the control plane takes it.
            tracing::error!(response.id = %record.id, project.id = %self.project, error.cause = %e, "cannot record a response's owner with the control plane yet");
        }
    }
}

/// A streamed create: ownership recorded when `response.created` passes (before the
/// client sees the id), metered (unless in the background) when the stream ends.
struct Relay {
    new: Option<NewResponse>,
    background: bool,
    billing: Option<Billing>,
    held: Option<crate::limits::Reservation>,
}

struct RelayState {
    upstream: futures_util::stream::BoxStream<'static, Result<Bytes, UpstreamError>>,
    sse: ResponsesSse,
    relay: Relay,
    queue: std::collections::VecDeque<Vec<u8>>,
    ended: bool,
    failed: bool,
}

impl Drop for RelayState {
    fn drop(&mut self) {
        if let Some(b) = self.relay.billing.as_mut() {
            let error = self.failed
                || self.sse.saw_error
                || self.sse.finished.as_deref() != Some("completed");
            b.record(self.sse.usage.unwrap_or_default(), error);
        }
        // A stream that broke before its id was known: nothing to follow.
        if let (Some(r), Some(new)) = (self.relay.held.take(), self.relay.new.as_ref()) {
            new.state.limiter.settle(r, Demand::default());
        }
    }
}

/// Relays a Responses event stream; `relay` is `None`-filled for a replay
/// (`GET ?stream=true`), which records and meters nothing.
fn relay(response: UpstreamResponse, relay: Relay) -> Response {
    let state = RelayState {
        upstream: response.bytes_stream(),
        sse: ResponsesSse::default(),
        relay,
        queue: Default::default(),
        ended: false,
        failed: false,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(event) = s.queue.pop_front() {
                return Some((Ok::<Bytes, std::io::Error>(Bytes::from(event)), s));
            }
            if s.ended {
                return None;
            }
            let events = match s.upstream.next().await {
                Some(Ok(bytes)) => s.sse.push(&bytes),
                Some(Err(e)) => {
                    s.failed = true;
                    s.ended = true;
                    if let Some(b) = s.relay.billing.as_ref() {
                        b.upstream_error(if e.is_timeout() { "timeout" } else { "stream" });
                    }
                    let error = OpenAiError::new(
                        StatusCode::BAD_GATEWAY,
                        "api_error",
                        "upstream_stream_failed",
                        "The stream from Mantle broke off.",
                    );
                    let mut body = error.body();
                    body["type"] = "error".into();
                    vec![format!("event: error\ndata: {body}\n\n").into_bytes()]
                }
                None => {
                    s.ended = true;
                    s.sse.finish().into_iter().collect()
                }
            };
            for event in events {
                // The first event that names the response: record it before the
                // client can use the id anywhere.
                if let (Some(id), Some(new)) = (s.sse.id.clone(), s.relay.new.take()) {
                    let background = s.relay.background || s.sse.background;
                    let held = if background {
                        s.relay.held.take()
                    } else {
                        None
                    };
                    new.register(id, background, "in_progress", held).await;
                }
                s.queue.push_back(event);
            }
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// `GET`, `DELETE`, cancel and input items: the key's project must own the id; the
/// request goes to Mantle as the client sent it (its query included).
async fn on_response(
    state: &ProxyState,
    headers: &HeaderMap,
    seen: &mut Seen,
    id: &str,
    method: reqwest::Method,
    suffix: &str,
    query: Option<&str>,
) -> Result<Response, OpenAiError> {
    let claims = state.authenticate(headers).await?;
    seen.project = Some(claims.project);
    let policy = state.policy()?;
    let project = authorize(&claims, &policy, None).map_err(|d| denial(d, None))?;
    let model = check_owner(state, project, id, None).await?;
    // Calls on a response go where its model is served.
    let prefix = policy
        .models
        .get(&*model)
        .map(|m| m.mantle_path)
        .unwrap_or_default();
    if let Some(q) = query
        && !q
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.~%=&+[]".contains(&b))
    {
        return Err(OpenAiError::invalid(
            "query",
            "invalid_query",
            "The query string has characters the proxy does not pass on.",
        ));
    }
    let stream = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.eq_ignore_ascii_case("stream=true"))
    });
    let path = match query {
        Some(q) if !q.is_empty() => format!("/responses/{id}{suffix}?{q}"),
        _ => format!("/responses/{id}{suffix}"),
    };
    let call = UpstreamCall {
        method: method.clone(),
        prefix,
        path: UpstreamPath::Dynamic(&path),
        body: if method == reqwest::Method::POST {
            Bytes::from_static(b"{}")
        } else {
            Bytes::new()
        },
        stream,
        headers: &[],
    };
    let response = send_upstream(state, project, call)
        .await
        .map_err(|(_, e)| e)?;
    if !response.status().is_success() {
        return Err(upstream_failure(response).await);
    }
    if stream {
        return Ok(relay(
            response,
            Relay {
                new: None,
                background: false,
                billing: None,
                held: None,
            },
        ));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_failure(state, &e).1)?;
    let (body, _) = rewrite_response(body).ok_or_else(invalid_upstream_body)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// One of the calls on an existing response, counted under `route`; the client's
/// query goes along when `pass_query`.
async fn forward(
    state: ProxyState,
    id: String,
    request: Request,
    route: &'static str,
    (method, suffix, pass_query): (reqwest::Method, &str, bool),
) -> Response {
    let mut seen = Seen::default();
    let query = pass_query
        .then(|| request.uri().query().map(str::to_owned))
        .flatten();
    let result = on_response(
        &state,
        request.headers(),
        &mut seen,
        &id,
        method,
        suffix,
        query.as_deref(),
    )
    .await;
    answer(&state, route, seen, result)
}

pub async fn retrieve_response(
    State(state): State<ProxyState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let call = (reqwest::Method::GET, "", true);
    forward(state, id, request, RETRIEVE_ROUTE, call).await
}

pub async fn delete_response(
    State(state): State<ProxyState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let call = (reqwest::Method::DELETE, "", false);
    forward(state, id, request, DELETE_ROUTE, call).await
}

pub async fn cancel_response(
    State(state): State<ProxyState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let call = (reqwest::Method::POST, "/cancel", false);
    forward(state, id, request, CANCEL_ROUTE, call).await
}

pub async fn list_input_items(
    State(state): State<ProxyState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let call = (reqwest::Method::GET, "/input_items", true);
    forward(state, id, request, INPUT_ITEMS_ROUTE, call).await
}
