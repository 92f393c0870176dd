//! The proxy's Prometheus metrics: requests, latency (total and the proxy's own
//! overhead), upstream errors and tokens, by project and model; the snapshot's age.

use foldhash::HashMap;
use std::sync::{Arc, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use strata_contract::MetricsRegistry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    /// `-` before the key is known.
    pub project: String,
    /// `-` unless the model is one the key may use (bounds label cardinality).
    pub model: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub project: String,
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub project: String,
    pub model: String,
    /// `status_5xx`, `status_4xx`, `timeout`, `connect`, `auth`, `stream`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub project: String,
    /// `requests`, `tokens` (per minute) or `insufficient_quota` (the budget).
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub project: String,
    pub model: String,
    /// `input`, `output` or `cached`.
    pub kind: &'static str,
}

/// The metrics of one (route, project, model) for successful requests, looked up once
/// and shared: building label sets (the project id formatted, the model cloned) on
/// every request showed in the proxy benchmark.
pub struct ModelMetrics {
    pub ok: Counter,
    pub duration: Histogram,
    pub input_tokens: Counter,
    pub output_tokens: Counter,
    pub cached_tokens: Counter,
}

type ModelMetricsByName = HashMap<String, Arc<ModelMetrics>>;

pub struct ProxyMetrics {
    registry: MetricsRegistry,
    by_model: RwLock<HashMap<(&'static str, uuid::Uuid), ModelMetricsByName>>,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<ModelLabels, Histogram>,
    pub overhead: Histogram,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub tokens: Family<TokenLabels, Counter>,
    pub rate_limited: Family<RefusedLabels, Counter>,
    pub snapshot_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub snapshot_fresh: Gauge,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("strata_proxy");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by route, project, model and status",
            requests.clone(),
        );
        let duration = Family::<ModelLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0])
        });
        registry.register(
            "request_duration_seconds",
            "Time from request to the last byte of the answer, upstream included",
            duration.clone(),
        );
        let overhead = Histogram::new([
            0.000_05, 0.000_1, 0.000_2, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.05,
        ]);
        registry.register(
            "overhead_seconds",
            "Time the proxy itself adds (before the upstream call and after its answer)",
            overhead.clone(),
        );
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failed calls to Mantle by kind",
            upstream_errors.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "tokens",
            "Tokens metered, by project, model and kind",
            tokens.clone(),
        );
        let rate_limited = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused with 429 by a rate limit or the budget, by project and kind",
            rate_limited.clone(),
        );
        let snapshot_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "snapshot_age_seconds",
            "Seconds since the control plane last confirmed the policy snapshot",
            snapshot_age.clone(),
        );
        let snapshot_fresh = Gauge::default();
        registry.register(
            "snapshot_fresh",
            "1 while the policy snapshot is within the staleness limit (else requests get 503)",
            snapshot_fresh.clone(),
        );
        Self {
            registry: MetricsRegistry::from(registry),
            by_model: RwLock::new(HashMap::default()),
            requests,
            duration,
            overhead,
            upstream_errors,
            tokens,
            rate_limited,
            snapshot_age,
            snapshot_fresh,
        }
    }

    /// The handles for successful `route` requests of `model` in `project`.
    pub fn for_model(
        &self,
        route: &'static str,
        project: uuid::Uuid,
        model: &str,
    ) -> Arc<ModelMetrics> {
        if let Some(found) = self
            .by_model
            .read()
            .ok()
            .and_then(|m| m.get(&(route, project)).and_then(|m| m.get(model)).cloned())
        {
            return found;
        }
        let project_label = project.to_string();
        let token = |kind| {
            self.tokens
                .get_or_create(&TokenLabels {
                    project: project_label.clone(),
                    model: model.to_owned(),
                    kind,
                })
                .clone()
        };
        let handles = Arc::new(ModelMetrics {
            ok: self
                .requests
                .get_or_create(&RequestLabels {
                    route,
                    project: project_label.clone(),
                    model: model.to_owned(),
                    status: 200,
                })
                .clone(),
            duration: self
                .duration
                .get_or_create(&ModelLabels {
                    project: project_label.clone(),
                    model: model.to_owned(),
                })
                .clone(),
            input_tokens: token("input"),
            output_tokens: token("output"),
            cached_tokens: token("cached"),
        });
        if let Ok(mut m) = self.by_model.write() {
            m.entry((route, project))
                .or_default()
                .insert(model.to_owned(), handles.clone());
        }
        handles
    }

    /// Counts a refusal by the limits (429s only; a 503 is not the project's doing).
    pub fn refused(&self, project: uuid::Uuid, error: &crate::OpenAiError) {
        if error.status == axum::http::StatusCode::TOO_MANY_REQUESTS {
            self.rate_limited
                .get_or_create(&RefusedLabels {
                    project: project.to_string(),
                    kind: error.kind,
                })
                .inc();
        }
    }

    pub fn register(&self, add: impl FnOnce(&mut Registry)) {
        self.registry.register(add);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.registry.render()
    }
}
