//! What a forwarded request costs and how it is counted: the request metrics, the
//! limits' reservation settled and the usage metered exactly once (when the answer
//! ends, or when the client goes away), and the relay of an event stream read
//! through its API's tap on the way.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures_util::StreamExt;

use crate::error::OpenAiError;
use crate::forward::NOT_READY;
use crate::limits::{Demand, Limits, Prices, Reservation};
use crate::metering::Metered;
use crate::metrics::{ModelMetrics, RequestLabels, UpstreamErrorLabels};
use crate::normalize::{SseRewriter, Usage};
use crate::state::ProxyState;
use crate::upstream::{UpstreamError, UpstreamResponse};

/// What is known so far about a request, for its metrics.
#[derive(Default)]
pub(crate) struct Seen {
    pub project: Option<uuid::Uuid>,
    /// Set once the model is one the key may use (bounds label cardinality).
    pub model: Option<String>,
    /// The model's metric handles, once looked up (a success is counted on them).
    pub handles: Option<Arc<ModelMetrics>>,
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
