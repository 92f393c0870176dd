//! The proxy's HTTP side: `/v1/chat/completions`, `/v1/models`, health, readiness
//! and metrics. Every response carries `x-request-id`; every error OpenAI's envelope.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use futures_util::StreamExt;
use serde_json::{Value, json};
use strata_aws::{UpstreamAuth, UpstreamRequest};
use strata_core::domain::{MantlePath, SnapshotProject};
use strata_core::keys::ApiKeyClaims;
use tokio_util::sync::CancellationToken;

use crate::access::{Denial, allowed_models, authorize};
use crate::config::ProxySettings;
use crate::error::OpenAiError;
use crate::limits::{
    Demand, LimitStore, Limiter, Limits, LocalStore, Prices, RedisStore, Reservation,
    SpendBaselines, estimate_input_tokens, prices,
};
use crate::metering::{Meter, Metered};
use crate::metrics::{ModelMetrics, ProxyMetrics, RequestLabels, UpstreamErrorLabels};
use crate::normalize::{SseRewriter, Usage, parse_chat, prepare_chat, rewrite_response};
use crate::responses::{self, Pending, ResponseRegistry};
use crate::upstream::{Destination, UpstreamClient, UpstreamError, UpstreamResponse};
use crate::{KeyError, KeyVerifier, Policy, SnapshotFollower};

/// The most of an upstream error body the proxy reads.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub struct Proxy {
    pub verifier: KeyVerifier,
    pub limiter: Arc<Limiter>,
    /// The control plane's record of Responses API ids.
    pub responses: ResponseRegistry,
    /// This replica's name when it claims background responses to follow.
    pub instance: String,
    /// Background responses this replica created and holds reservations for.
    pending: std::sync::Mutex<HashMap<String, Pending>>,
    pub follower: Arc<SnapshotFollower>,
    pub meter: Arc<Meter>,
    pub metrics: ProxyMetrics,
    upstream_auth: Arc<dyn UpstreamAuth>,
    upstream: UpstreamClient,
    /// Parsed Mantle URLs by path and region.
    upstream_urls: RwLock<UpstreamUrls>,
    pub(crate) settings: ProxySettings,
}

pub type ProxyState = Arc<Proxy>;

impl Proxy {
    /// `control`: the client for the control plane; `upstream_auth`: how Mantle calls
    /// are authenticated (assumed project roles, or a Bedrock API key).
    pub fn new(
        settings: ProxySettings,
        control: reqwest::Client,
        upstream_auth: Arc<dyn UpstreamAuth>,
    ) -> Result<Self, String> {
        let upstream = UpstreamClient::new(
            crate::workers::default_workers(),
            Duration::from_secs(10),
            Duration::from_secs(settings.config.upstream_timeout_secs),
            Duration::from_secs(settings.config.upstream_idle_timeout_secs),
        )?;
        let config = &settings.config;
        let store: Arc<dyn LimitStore> = match &config.redis_url {
            Some(url) => Arc::new(RedisStore::new(url.expose(), &config.redis_key_prefix)?),
            None => Arc::new(LocalStore::new()),
        };
        let limiter = Arc::new(Limiter::new(
            store,
            SpendBaselines::new(
                control.clone(),
                &settings.control_plane_url,
                settings.credential.clone(),
            ),
            config.limits_on_store_error,
        ));
        let metrics = ProxyMetrics::new();
        let errors = limiter.errors.clone();
        metrics.register(|r| {
            r.register(
                "limits_store_errors",
                "Reservations or settlements the limits store (Redis) failed",
                errors,
            )
        });
        Ok(Self {
            limiter,
            responses: ResponseRegistry::new(
                control.clone(),
                &settings.control_plane_url,
                settings.credential.clone(),
            ),
            instance: strata_core::services::lease_owner(),
            pending: std::sync::Mutex::new(HashMap::new()),
            verifier: KeyVerifier::new(
                control.clone(),
                &settings.control_plane_url,
                &settings.key_issuer,
                &settings.audience,
            ),
            follower: Arc::new(SnapshotFollower::new(
                control.clone(),
                &settings.control_plane_url,
                settings.credential.clone(),
                Duration::from_secs(settings.config.max_staleness_secs),
            )),
            meter: Arc::new(Meter::new(
                control,
                &settings.control_plane_url,
                settings.credential.clone(),
            )),
            metrics,
            upstream_auth,
            upstream,
            upstream_urls: RwLock::new(foldhash::HashMap::default()),
            settings,
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn pending_background(&self, id: &str, pending: Pending) {
        self.pending().insert(id.to_owned(), pending);
    }

    pub(crate) fn take_pending(&self, id: &str) -> Option<Pending> {
        self.pending().remove(id)
    }

    pub(crate) fn restore_pending(&self, id: &str, pending: Pending) {
        self.pending().insert(id.to_owned(), pending);
    }

    pub(crate) fn drain_pending(&self) -> Vec<(String, Pending)> {
        self.pending().drain().collect()
    }

    /// Mantle's URL for a path with ids or a query in it (parsed each time), under the
    /// model's prefix: `STRATA_MANTLE_URL` is the `/v1` base, whose `/v1` another
    /// prefix replaces.
    fn upstream_url_for(
        &self,
        region: &str,
        prefix: MantlePath,
        path: &str,
    ) -> Option<Arc<Target>> {
        let base = self.settings.mantle_url.replace("{region}", region);
        let base = base.trim_end_matches('/');
        let base = match prefix {
            MantlePath::V1 => base.to_owned(),
            other => format!(
                "{}{}",
                base.strip_suffix("/v1").unwrap_or(base),
                other.as_str()
            ),
        };
        Target::parse(&format!("{base}{path}")).map(Arc::new)
    }

    /// Mantle's URL for `path` in `region`, parsed once per region, prefix and path.
    fn upstream_url(
        &self,
        region: &str,
        prefix: MantlePath,
        path: &'static str,
    ) -> Option<Arc<Target>> {
        if let Some(url) = self
            .upstream_urls
            .read()
            .ok()
            .and_then(|m| m.get(&(prefix, path)).and_then(|m| m.get(region)).cloned())
        {
            return Some(url);
        }
        let url = self.upstream_url_for(region, prefix, path)?;
        if let Ok(mut m) = self.upstream_urls.write() {
            m.entry((prefix, path))
                .or_default()
                .insert(region.to_owned(), url.clone());
        }
        Some(url)
    }

    pub(crate) fn policy(&self) -> Result<Arc<Policy>, OpenAiError> {
        self.follower.current().ok_or_else(|| {
            OpenAiError::unavailable(
                "policy_unavailable",
                "The proxy has no current policy from the control plane; retry shortly.",
            )
        })
    }

    /// What every forwarded request starts with: the verified key (its project noted
    /// for the metrics), the current policy, and the body. The request's head is
    /// dropped once the key is read: its values are slices of the client connection's
    /// read buffer, which hyper replaces (8 KiB) while the request is in flight, so
    /// keeping the head would hold the old buffer for as long as a stream waits for its
    /// first token (8 MiB with 1,000 waiting, bench/proxy.sh). A body forwarded as it
    /// came is dropped by hyper once written to Mantle.
    pub(crate) async fn begin(
        &self,
        client: Request,
        seen: &mut Seen,
    ) -> Result<(Arc<ApiKeyClaims>, Arc<Policy>, Bytes), OpenAiError> {
        let (head, body) = client.into_parts();
        let claims = self.authenticate(&head.headers).await?;
        drop(head);
        seen.project = Some(claims.project);
        let policy = self.policy()?;
        let limit = self.settings.config.proxy_max_body_bytes;
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
            OpenAiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "body_too_large",
                format!("The request body is larger than the proxy accepts ({limit} bytes)."),
            )
        })?;
        Ok((claims, policy, bytes))
    }

    pub(crate) async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<Arc<ApiKeyClaims>, OpenAiError> {
        // Anthropic's SDKs send the key as `x-api-key`, OpenAI's as a bearer token.
        let secret = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                OpenAiError::invalid_key(
                    "No API key given: send `Authorization: Bearer sk-strata-…` or `x-api-key: sk-strata-…` (the key from strata).",
                )
            })?;
        self.verifier
            .verify(secret, Utc::now().timestamp())
            .await
            .map_err(|e| match e {
                KeyError::Unavailable(_) => OpenAiError::unavailable(
                    "keys_unavailable",
                    "The proxy cannot fetch strata's signing keys yet; retry shortly.",
                ),
                KeyError::Expired => OpenAiError::invalid_key("This API key has expired."),
                KeyError::Malformed | KeyError::Invalid(_) => {
                    OpenAiError::invalid_key("Incorrect API key provided.")
                }
            })
    }
}

pub(crate) fn denial(d: Denial, model: Option<&str>) -> OpenAiError {
    match d {
        Denial::KeyRevoked => OpenAiError::invalid_key("This API key has been revoked."),
        // A valid signature for a project this replica's snapshot does not have yet: a
        // key made moments after its project. The SDKs retry a 503.
        Denial::UnknownProject => OpenAiError::unavailable(
            "project_not_ready",
            "This key's project has not reached the proxy yet; retry shortly.",
        ),
        Denial::ProjectArchived => OpenAiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "project_archived",
            "This key's project is archived.",
        ),
        Denial::ModelNotAllowed => OpenAiError::model_not_found(model.unwrap_or_default()),
    }
}

/// Every route but the hot one's fast path (`front.rs`), which is also here so that a
/// request reaching the router for it is served the same.
pub(crate) fn routes(state: ProxyState) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(|State(state), request| chat_completions(state, request)),
        )
        .route("/v1/responses", post(responses::create_response))
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
/// metered usage (retrying for up to 10 s) before returning.
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

fn model_entry(model: &strata_core::domain::SnapshotModel) -> Value {
    json!({"id": model.id.as_str(), "object": "model", "created": model.updated_at, "owned_by": model.provider})
}

/// A client of Anthropic's API (its SDKs send `anthropic-version` on every call): it
/// reads `/v1/models` in Anthropic's shape, listing the Messages API's models.
fn anthropic_client(headers: &HeaderMap) -> bool {
    headers.contains_key("anthropic-version")
}

/// A model as Anthropic's models API lists it.
fn anthropic_model_entry(model: &strata_core::domain::SnapshotModel) -> Value {
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

/// What is known so far about a request, for its metrics.
#[derive(Default)]
pub(crate) struct Seen {
    pub project: Option<uuid::Uuid>,
    /// Set once the model is one the key may use (bounds label cardinality).
    pub model: Option<String>,
    /// The model's metric handles, once looked up (a success is counted on them).
    pub handles: Option<Arc<ModelMetrics>>,
}

const CHAT_ROUTE: &str = "chat_completions";

pub(crate) async fn chat_completions(state: ProxyState, request: Request) -> Response {
    let started = Instant::now();
    let mut seen = Seen::default();
    let result = chat(&state, request, started, &mut seen).await;
    answer(&state, CHAT_ROUTE, seen, result)
}

/// The handler's answer, counted in the request metrics.
pub(crate) fn answer(
    state: &ProxyState,
    route: &'static str,
    seen: Seen,
    result: Result<Response, OpenAiError>,
) -> Response {
    let response = result.unwrap_or_else(IntoResponse::into_response);
    let status = response.status();
    match (seen.project, &seen.model, &seen.handles) {
        (_, _, Some(handles)) if status == StatusCode::OK => handles.ok.inc(),
        (Some(project), Some(model), _) if status == StatusCode::OK => {
            state.metrics.for_model(route, project, model).ok.inc()
        }
        _ => state
            .metrics
            .requests
            .get_or_create(&RequestLabels {
                route,
                project: seen.project.map_or_else(|| "-".into(), |p| p.to_string()),
                model: seen.model.unwrap_or_else(|| "-".into()),
                status: status.as_u16(),
            })
            .inc(),
    };
    response
}

/// What a forwarded request is metered under. Metered exactly once: when it ends, or,
/// if the client goes away first (the handler or stream is dropped), as an error.
pub(crate) struct Billing {
    pub state: ProxyState,
    pub project: uuid::Uuid,
    pub key: uuid::Uuid,
    pub model: String,
    pub metrics: Arc<ModelMetrics>,
    pub at: chrono::DateTime<Utc>,
    pub started: Instant,
    pub recorded: bool,
    /// What was reserved against the limits, settled to the usage when metered.
    pub reservation: Option<Reservation>,
    /// The model's prices.
    pub prices: Prices,
}

impl Drop for Billing {
    fn drop(&mut self) {
        self.record(Usage::default(), true);
    }
}

impl Billing {
    /// Reserves `demand` against `limits` and opens the request's billing under
    /// (route, model name, prices), its metric handles noted in `seen`; the answer's
    /// `x-ratelimit-*` headers come back with it.
    pub(crate) async fn admit(
        state: &ProxyState,
        limits: &Limits,
        demand: Demand,
        (route, model, prices): (&'static str, &str, Prices),
        started: Instant,
        seen: &mut Seen,
    ) -> Result<(Self, Vec<(HeaderName, HeaderValue)>), OpenAiError> {
        let admission = state
            .limiter
            .admit(limits, demand, Utc::now())
            .await
            .inspect_err(|e| state.metrics.refused(limits.project, e))?;
        let handles = state.metrics.for_model(route, limits.project, model);
        seen.handles = Some(handles.clone());
        let billing = Self {
            state: state.clone(),
            project: limits.project,
            key: limits.key,
            model: model.to_owned(),
            metrics: handles,
            at: Utc::now(),
            started,
            recorded: false,
            reservation: admission.reservation,
            prices,
        };
        Ok((billing, admission.headers))
    }

    pub fn record(&mut self, usage: Usage, error: bool) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let latency = self.started.elapsed();
        if let Some(reservation) = self.reservation.take() {
            let used = Demand::used(self.prices, &usage);
            self.state.limiter.settle(reservation, used);
        }
        let m = &self.metrics;
        m.duration.observe(latency.as_secs_f64());
        for (counter, n) in [
            (&m.input_tokens, usage.input_tokens),
            (&m.output_tokens, usage.output_tokens),
            (&m.cached_tokens, usage.cached_tokens),
        ] {
            if n > 0 {
                counter.inc_by(n);
            }
        }
        self.state.meter.record(Metered {
            project: self.project,
            key: self.key,
            model: self.model.clone(),
            at: self.at,
            usage,
            error,
            latency,
        });
    }

    /// The call to Mantle failed (`kind` says how): counted as an upstream error and
    /// metered as a failed request — unless the project is not provisioned yet, which
    /// is refused before any call (like a bad key) and so not metered.
    pub fn failed(&mut self, kind: &'static str) {
        self.upstream_error(kind);
        if kind == NOT_READY {
            self.recorded = true;
            if let Some(r) = self.reservation.take() {
                self.state.limiter.settle(r, Demand::default());
            }
        } else {
            self.record(Usage::default(), true);
        }
    }

    pub fn upstream_error(&self, kind: &'static str) {
        self.state
            .metrics
            .upstream_errors
            .get_or_create(&UpstreamErrorLabels {
                project: self.project.to_string(),
                model: self.model.clone(),
                kind,
            })
            .inc();
    }
}

/// `client`: the whole request rather than a `HeaderMap` extractor, which copies the
/// headers — and so that its head and body can be dropped before the wait for Mantle.
async fn chat(
    state: &ProxyState,
    client: Request,
    started: Instant,
    seen: &mut Seen,
) -> Result<Response, OpenAiError> {
    let (claims, policy, bytes) = state.begin(client, seen).await?;
    let mut request = parse_chat(&bytes)?;
    let project = authorize(&claims, &policy, Some(&request.model))
        .map_err(|d| denial(d, Some(&request.model)))?;
    let model = policy
        .models
        .get(&request.model)
        .ok_or_else(|| OpenAiError::model_not_found(&request.model))?;
    seen.model = Some(request.model.clone());
    let upstream_body = prepare_chat(&mut request, model)?;
    let limits = Limits::of(project, claims.sub, claims.rate_limits);
    let demand = Demand::priced(
        prices(model),
        estimate_input_tokens(bytes.len()),
        request.max_output_tokens(state.settings.config.default_max_tokens),
    );
    // Unless forwarded as it came (then hyper drops it once written to Mantle).
    drop(bytes);
    let (mut billing, limit_headers) = Billing::admit(
        state,
        &limits,
        demand,
        (CHAT_ROUTE, &request.model, prices(model)),
        started,
        seen,
    )
    .await?;
    let sent_at = Instant::now();
    let call = UpstreamCall {
        method: reqwest::Method::POST,
        prefix: model.mantle_path,
        path: UpstreamPath::Fixed("/chat/completions"),
        body: upstream_body,
        stream: request.stream,
        headers: &[],
    };
    let response = match send_upstream(state, project, call).await {
        Ok(r) => r,
        Err((kind, e)) => {
            billing.failed(kind);
            return Err(e);
        }
    };
    let pre_upstream = sent_at.duration_since(started);
    if !response.status().is_success() {
        let e = upstream_failure(response).await;
        billing.failed(if e.status.is_server_error() {
            "status_5xx"
        } else {
            "status_4xx"
        });
        state.metrics.overhead.observe(pre_upstream.as_secs_f64());
        return Err(e);
    }
    if request.stream {
        state.metrics.overhead.observe(pre_upstream.as_secs_f64());
        let tap = SseRewriter::new(request.client_wants_usage);
        let mut response = relay_stream(response, tap, billing);
        response.headers_mut().extend(limit_headers);
        return Ok(response);
    }
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            let (kind, e) = transport_failure(state, &e);
            billing.failed(kind);
            return Err(e);
        }
    };
    let after = Instant::now();
    let Some((bytes, usage)) = rewrite_response(body) else {
        billing.failed("invalid_body");
        return Err(OpenAiError::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "upstream_invalid_response",
            "Mantle answered with a body that is not JSON.",
        ));
    };
    billing.record(usage, false);
    state
        .metrics
        .overhead
        .observe((pre_upstream + after.elapsed()).as_secs_f64());
    let mut response = ([(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    response.headers_mut().extend(limit_headers);
    Ok(response)
}

fn upstream_timeout(secs: u64) -> OpenAiError {
    OpenAiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "api_error",
        "upstream_timeout",
        format!("Mantle did not answer within {secs} s."),
    )
}

fn upstream_unreachable() -> OpenAiError {
    OpenAiError::new(
        StatusCode::BAD_GATEWAY,
        "api_error",
        "upstream_unreachable",
        "The proxy could not reach Mantle.",
    )
}

/// Parsed Mantle URLs per (prefix, fixed path), then per region.
type UpstreamUrls =
    foldhash::HashMap<(MantlePath, &'static str), foldhash::HashMap<String, Arc<Target>>>;

/// What to send to Mantle for a project: `method` `path` (under the model's `prefix`,
/// with its query) and the body (empty for GET and DELETE).
pub(crate) struct UpstreamCall<'a> {
    pub method: reqwest::Method,
    /// Where Mantle serves the call's model (`/v1`, `/openai/v1`, `/anthropic/v1`).
    pub prefix: MantlePath,
    pub path: UpstreamPath<'a>,
    pub body: Bytes,
    /// A stream: no overall timeout (the idle timeout still applies).
    pub stream: bool,
    /// Headers Mantle needs beyond the project and signature (`anthropic-version`).
    pub headers: &'a [(&'static str, &'a str)],
}

pub(crate) enum UpstreamPath<'a> {
    /// A fixed path whose parsed URL is kept per region (the chat hot path).
    Fixed(&'static str),
    /// A path with an id or a query in it.
    Dynamic(&'a str),
}

/// A Mantle URL, parsed for signing (`url`) and for sending (`to`).
#[derive(Clone)]
pub(crate) struct Target {
    url: reqwest::Url,
    to: Destination,
}

impl Target {
    fn parse(s: &str) -> Option<Self> {
        let url = reqwest::Url::parse(s).ok()?;
        let to = Destination::parse(url.as_str())?;
        Some(Self { url, to })
    }
}

/// The upstream error kind of a project that is not provisioned yet.
pub(crate) const NOT_READY: &str = "not_ready";

pub(crate) fn project_not_ready() -> (&'static str, OpenAiError) {
    (
        NOT_READY,
        OpenAiError::unavailable(
            "project_not_ready",
            "This project is not provisioned on AWS yet (strata is still reconciling it); retry shortly.",
        ),
    )
}

/// Signs and sends a request to the project's Mantle region.
pub(crate) async fn send_upstream(
    state: &ProxyState,
    project: &SnapshotProject,
    call: UpstreamCall<'_>,
) -> Result<UpstreamResponse, (&'static str, OpenAiError)> {
    let mantle_project = project
        .mantle_project_id
        .as_deref()
        .ok_or_else(project_not_ready)?;
    let region = project.region.as_str();
    let target = match call.path {
        UpstreamPath::Fixed(path) => state.upstream_url(region, call.prefix, path),
        UpstreamPath::Dynamic(path) => state.upstream_url_for(region, call.prefix, path),
    }
    .ok_or_else(|| {
        tracing::warn!(
            region,
            "the Mantle URL template gives no valid URL for this region"
        );
        ("connect", upstream_unreachable())
    })?;
    // Mantle's project is a "workspace" to its Anthropic-compatible API.
    let project_header = match call.prefix {
        MantlePath::AnthropicV1 => "anthropic-workspace",
        MantlePath::V1 | MantlePath::OpenAiV1 => "openai-project",
    };
    let with_body = [
        ("content-type", "application/json"),
        (project_header, mantle_project),
    ];
    let ours: &[(&str, &str)] = if call.body.is_empty() {
        &with_body[1..]
    } else {
        &with_body
    };
    let all: Vec<(&str, &str)>;
    let headers = if call.headers.is_empty() {
        ours
    } else {
        all = ours.iter().chain(call.headers).copied().collect();
        &all
    };
    let auth = state
        .upstream_auth
        .headers(&UpstreamRequest {
            method: call.method.as_str(),
            role_arn: project.role_arn.as_deref(),
            region,
            url: &target.url,
            headers,
            body: &call.body,
        })
        .await
        .map_err(|e| {
            if e.kind == strata_aws::ErrorKind::NotFound {
                return project_not_ready();
            }
            tracing::warn!(project.id = %project.id, error.cause = %e, "cannot authenticate to Mantle for the project");
            (
                "auth",
                OpenAiError::new(
                    StatusCode::BAD_GATEWAY,
                    "api_error",
                    "upstream_auth_failed",
                    "The proxy could not obtain credentials for this project's Mantle calls.",
                ),
            )
        })?;
    let mut request = axum::http::Request::new(http_body_util::Full::new(call.body));
    *request.method_mut() = call.method;
    let given = headers
        .iter()
        .map(|&(n, v)| (Cow::Borrowed(n), HeaderValue::from_str(v)));
    // The signer's values are moved, not copied (the session token is ~1 KB).
    let signed = auth.into_iter().map(|(n, v)| (n, HeaderValue::try_from(v)));
    for (name, value) in given.chain(signed) {
        let (Ok(header), Ok(value)) = (upstream_header_name(&name), value) else {
            // A header Mantle's id or the signer made that HTTP cannot carry.
            tracing::warn!(project.id = %project.id, header = %name, "cannot build the request to Mantle");
            return Err(("connect", upstream_unreachable()));
        };
        request.headers_mut().append(header, value);
    }
    state
        .upstream
        .send(&target.to, request, call.stream)
        .await
        .map_err(|e| transport_failure(state, &e))
}

/// The name of a header sent to Mantle: the usual ones ready-made (parsing a name
/// allocates for any but the standard ones), any other parsed.
fn upstream_header_name(name: &str) -> Result<header::HeaderName, header::InvalidHeaderName> {
    const OPENAI_PROJECT: header::HeaderName = header::HeaderName::from_static("openai-project");
    const X_AMZ_DATE: header::HeaderName = header::HeaderName::from_static("x-amz-date");
    const X_AMZ_SECURITY_TOKEN: header::HeaderName =
        header::HeaderName::from_static("x-amz-security-token");
    Ok(match name {
        "content-type" => header::CONTENT_TYPE,
        "authorization" => header::AUTHORIZATION,
        "openai-project" => OPENAI_PROJECT,
        "x-amz-date" => X_AMZ_DATE,
        "x-amz-security-token" => X_AMZ_SECURITY_TOKEN,
        other => header::HeaderName::try_from(other)?,
    })
}

/// A call to Mantle or the read of its answer failed in transport: the upstream
/// error kind for the metrics, and the client's error (504 on a timeout, else 502).
pub(crate) fn transport_failure(
    state: &ProxyState,
    e: &UpstreamError,
) -> (&'static str, OpenAiError) {
    if e.is_timeout() {
        (
            "timeout",
            upstream_timeout(state.settings.config.upstream_timeout_secs),
        )
    } else {
        ("connect", upstream_unreachable())
    }
}

/// Mantle's error, in the envelope, with a status that tells the client the truth:
/// the client's own mistakes keep their status; Mantle refusing strata's credentials
/// is the proxy's failure (502), not the client's.
pub(crate) async fn upstream_failure(response: UpstreamResponse) -> OpenAiError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ERROR_BODY {
            break;
        }
    }
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let detail = parsed.as_ref().and_then(|v| v.get("error"));
    let message = detail
        .and_then(|d| d.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Mantle answered HTTP {}.", status.as_u16()));
    let upstream_code = detail
        .and_then(|d| d.get("code"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let param = detail
        .and_then(|d| d.get("param"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (status, kind, code) = match status.as_u16() {
        401 | 403 => (
            StatusCode::BAD_GATEWAY,
            "api_error",
            "upstream_denied".to_owned(),
        ),
        429 => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            upstream_code.unwrap_or_else(|| "rate_limit_exceeded".into()),
        ),
        s @ 400..=499 => (
            StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST),
            "invalid_request_error",
            upstream_code.unwrap_or_else(|| "upstream_rejected".into()),
        ),
        s => (
            StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY),
            "api_error",
            upstream_code.unwrap_or_else(|| "upstream_error".into()),
        ),
    };
    if code == "upstream_denied" {
        // AWS's refusal names strata's account and role: logged, not shown to the client.
        tracing::warn!(upstream.message = %message, "Mantle refused strata's credentials");
        return OpenAiError::new(
            status,
            kind,
            &code,
            "Mantle refused the proxy's credentials for this project; the platform team has the details in strata's logs.",
        );
    }
    let mut e = OpenAiError::new(status, kind, &code, message);
    e.param = param;
    e.retry_after = retry_after;
    e
}

/// How a relayed event stream is read on its way to the client: complete events out
/// (rewritten where the API needs it), and at the end what it used and whether it
/// finished as it should.
pub(crate) trait StreamTap: Send + 'static {
    /// Bytes to send the client for this chunk of upstream bytes.
    fn push(&mut self, chunk: &[u8]) -> Vec<u8>;
    /// Whatever is left when the upstream closes.
    fn finish(&mut self) -> Vec<u8>;
    fn usage(&self) -> Usage;
    /// The stream's end marker came and no error event did.
    fn completed(&self) -> bool;
    /// The event that tells the client the stream broke off.
    fn broken_off(error: &OpenAiError) -> String;
}

impl StreamTap for SseRewriter {
    fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        SseRewriter::push(self, chunk)
    }

    fn finish(&mut self) -> Vec<u8> {
        SseRewriter::finish(self)
    }

    fn usage(&self) -> Usage {
        self.usage.unwrap_or_default()
    }

    fn completed(&self) -> bool {
        self.saw_done && !self.saw_error
    }

    fn broken_off(error: &OpenAiError) -> String {
        format!("data: {}\n\n", error.body())
    }
}

/// The upstream stream, read through its tap event by event; metered when it ends or
/// when the client goes away (dropping it closes the upstream connection too).
struct Relay<T: StreamTap> {
    upstream: futures_util::stream::BoxStream<'static, Result<Bytes, UpstreamError>>,
    tap: T,
    billing: Billing,
    failed: bool,
    ended: bool,
}

impl<T: StreamTap> Drop for Relay<T> {
    fn drop(&mut self) {
        // Without its end marker the stream did not finish (the client left, or Mantle
        // broke off): metered with whatever usage arrived, as an error.
        let error = self.failed || !self.tap.completed();
        self.billing.record(self.tap.usage(), error);
    }
}

pub(crate) fn relay_stream<T: StreamTap>(
    response: UpstreamResponse,
    tap: T,
    billing: Billing,
) -> Response {
    let relay = Relay {
        upstream: response.bytes_stream(),
        tap,
        billing,
        failed: false,
        ended: false,
    };
    let stream = futures_util::stream::unfold(relay, |mut relay| async move {
        if relay.ended {
            return None;
        }
        loop {
            match relay.upstream.next().await {
                Some(Ok(bytes)) => {
                    let out = relay.tap.push(&bytes);
                    if !out.is_empty() {
                        return Some((Ok::<Bytes, std::io::Error>(Bytes::from(out)), relay));
                    }
                }
                Some(Err(e)) => {
                    relay.failed = true;
                    relay.ended = true;
                    relay
                        .billing
                        .upstream_error(if e.is_timeout() { "timeout" } else { "stream" });
                    let error = OpenAiError::new(
                        StatusCode::BAD_GATEWAY,
                        "api_error",
                        "upstream_stream_failed",
                        "The stream from Mantle broke off.",
                    );
                    let event = T::broken_off(&error);
                    return Some((Ok(Bytes::from(event)), relay));
                }
                None => {
                    relay.ended = true;
                    let rest = relay.tap.finish();
                    return (!rest.is_empty()).then(|| (Ok(Bytes::from(rest)), relay));
                }
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
    // Tells buffering reverse proxies (nginx) in front of strata not to hold events.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
