//! The reconciler: makes AWS match each project's declaration and keeps it so.
//!
//! Shaped like a Kubernetes controller. For one project, [`Reconciler::reconcile`]
//! reads what exists (Mantle project, IAM role, its policies and tags, tagged
//! resources), compares it with what the project declares, and writes only the
//! difference — or, in a dry run, returns the difference as a plan. The
//! [`runner`] claims due projects with leases, so replicas never reconcile one
//! project at once, and schedules the next look: at once after a change, with
//! backoff after a failure, after the resync interval otherwise.

mod config;
mod desired;
mod environment;
mod error;
mod leases;
mod metrics;
mod plan;
mod project;
pub mod runner;
mod state;

use std::sync::Arc;

use strata_aws::AwsClients;
use strata_core::clock::Clock;
use strata_core::store::Store;

pub use config::ReconcilerConfig;
pub use environment::{
    COST_TAGS_REPORT, CostTagKeyState, CostTagsReport, CoverageReport, EnvironmentPass,
    MissingCostTags, OrphanedResource, coverage_report_name, stored_report,
};
pub use error::ReconcileError;
pub use metrics::ReconcilerMetrics;
pub use plan::{Change, ChangeAction, Plan};
pub use project::ProjectOutcome;

/// Everything a pass needs; cheap to clone.
#[derive(Clone)]
pub struct Reconciler {
    pub(crate) store: Store,
    pub(crate) aws: AwsClients,
    pub(crate) config: Arc<ReconcilerConfig>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: ReconcilerMetrics,
    /// This process, as the owner of its leases.
    pub(crate) owner: String,
}

impl Reconciler {
    pub fn new(
        store: Store,
        aws: AwsClients,
        config: ReconcilerConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let owner = strata_core::services::lease_owner();
        Self {
            store,
            aws,
            config: Arc::new(config.normalized()),
            clock,
            metrics: ReconcilerMetrics::new(),
            owner,
        }
    }

    pub fn aws(&self) -> &AwsClients {
        &self.aws
    }

    /// Registers the reconciler's and the AWS adapters' metrics.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
        self.aws.calls.register(registry);
    }
}
