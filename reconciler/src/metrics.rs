//! The reconciler's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabels {
    pub ready: String,
}

#[derive(Clone)]
pub struct ReconcilerMetrics {
    pub durations: Family<ResultLabels, Histogram, fn() -> Histogram>,
    pub passes: Family<ResultLabels, Counter>,
    pub queue_depth: Gauge,
    pub projects: Family<ReadyLabels, Gauge>,
}

fn histogram() -> Histogram {
    Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
}

impl ReconcilerMetrics {
    pub fn new() -> Self {
        Self {
            durations: Family::new_with_constructor(histogram),
            passes: Family::default(),
            queue_depth: Gauge::default(),
            projects: Family::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "reconcile_duration_seconds",
            "Time to reconcile one project, by result",
            self.durations.clone(),
        );
        registry.register(
            "reconcile_passes",
            "Project reconcile passes, by result",
            self.passes.clone(),
        );
        registry.register(
            "reconcile_queue_depth",
            "Projects due for a reconcile now",
            self.queue_depth.clone(),
        );
        registry.register(
            "projects_by_condition",
            "Live projects by their Ready condition (True/False/Unknown/None)",
            self.projects.clone(),
        );
    }
}

impl Default for ReconcilerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
