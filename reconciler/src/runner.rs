//! Running passes: the loop in `strata serve`, a single pass for `strata
//! reconcile`, and the plan for `GET …/plan`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_core::domain::ProjectAws;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::environment::COST_TAGS_REPORT;
use crate::error::ReconcileError;
use crate::plan::{Change, Plan};
use crate::project::ProjectOutcome;
use crate::{Reconciler, leases, state};

const ENVIRONMENT_LEASE: &str = "environment-pass";

fn project_lease(id: Uuid) -> String {
    format!("project:{id}")
}

/// What happened to one project in a pass.
#[derive(Debug, Clone)]
pub enum Visit {
    /// Another replica holds it, or it was no longer due.
    Skipped,
    Done(Box<ProjectOutcome>),
}

/// The outcome of `strata reconcile`.
#[derive(Debug, Default)]
pub struct PassSummary {
    pub projects: usize,
    pub ready: usize,
    pub failed: Vec<(Uuid, String)>,
    pub skipped: usize,
    pub changes: Vec<(Uuid, Change)>,
}

impl Reconciler {
    fn not_configured(&self, aws: &ProjectAws) -> Option<ProjectOutcome> {
        use strata_core::domain::{ConditionStatus, ConditionType};
        let why = self.aws.unavailable.as_ref()?;
        let message = format!(
            "AWS is not configured ({why}); set AWS credentials (environment, profile or role) and strata will create the project's resources"
        );
        let failure = crate::project::StepError {
            retryable: false,
            reason: "AwsNotConfigured",
            message: message.clone(),
        };
        let conditions = [
            ConditionType::MantleProjectReady,
            ConditionType::IamRoleReady,
            ConditionType::TagsReady,
            ConditionType::Ready,
        ]
        .into_iter()
        .map(|k| {
            (
                k,
                ConditionStatus::Unknown,
                "AwsNotConfigured".to_owned(),
                message.clone(),
            )
        })
        .collect();
        Some(ProjectOutcome {
            changes: Vec::new(),
            aws: aws.clone(),
            conditions,
            failure: Some(failure),
            cleaned_up: false,
        })
    }

    /// Claims the project, reconciles it and records the outcome. `only_if_due`
    /// skips a project another replica has just handled.
    pub async fn visit(&self, id: Uuid, only_if_due: bool) -> Result<Visit, ReconcileError> {
        let lease = project_lease(id);
        if !leases::claim(self, &lease, Duration::from_secs(self.config.lease_secs)).await? {
            return Ok(Visit::Skipped);
        }
        let result = self.visit_claimed(id, only_if_due).await;
        if let Err(e) = leases::release(self, &lease).await {
            tracing::warn!(project.id = %id, error = %e, "could not release a lease; it will expire");
        }
        result
    }

    async fn visit_claimed(&self, id: Uuid, only_if_due: bool) -> Result<Visit, ReconcileError> {
        let Some(claimed) = state::load(self, id).await? else {
            return Ok(Visit::Skipped);
        };
        if only_if_due && claimed.next_attempt_at > self.clock.now() {
            return Ok(Visit::Skipped);
        }
        let started = Instant::now();
        let mut outcome = match self.not_configured(&claimed.project.aws) {
            Some(o) => o,
            None => {
                // Stay well inside the lease, so no other replica takes over mid-pass.
                let limit = Duration::from_millis(self.config.lease_secs.max(1) * 750);
                match tokio::time::timeout(
                    limit,
                    self.reconcile(&claimed.project, claimed.pending, false),
                )
                .await
                {
                    Ok(o) => o,
                    Err(_) => self.timed_out(&claimed, limit),
                }
            }
        };
        let result = match &outcome.failure {
            None => "ok",
            Some(f) if f.retryable => "retry",
            Some(_) => "error",
        };
        self.metrics
            .durations
            .get_or_create(&crate::metrics::ResultLabels { result })
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .passes
            .get_or_create(&crate::metrics::ResultLabels { result })
            .inc();
        let next = state::record(self, &claimed, &outcome).await?;
        match &outcome.failure {
            Some(f) => {
                tracing::warn!(project.id = %id, reason = f.reason, next_attempt_at = %next, "reconcile failed: {}", f.message)
            }
            None if !outcome.changes.is_empty() => {
                tracing::info!(project.id = %id, changes = outcome.changes.len(), "project reconciled")
            }
            None => tracing::debug!(project.id = %id, "project in sync"),
        }
        outcome.changes.shrink_to_fit();
        Ok(Visit::Done(Box::new(outcome)))
    }

    fn timed_out(&self, claimed: &state::Claimed, limit: Duration) -> ProjectOutcome {
        use strata_core::domain::{ConditionStatus, ConditionType};
        let message = format!(
            "the pass took longer than {} s and was stopped",
            limit.as_secs()
        );
        ProjectOutcome {
            changes: Vec::new(),
            aws: claimed.project.aws.clone(),
            conditions: vec![(
                ConditionType::Ready,
                ConditionStatus::False,
                "Timeout".into(),
                message.clone(),
            )],
            failure: Some(crate::project::StepError {
                retryable: true,
                reason: "Timeout",
                message,
            }),
            cleaned_up: false,
        }
    }

    /// The changes a pass would make to one project, without making them.
    pub async fn plan(&self, project: &strata_core::domain::Project) -> Plan {
        if self.aws.unavailable.is_some() {
            let assume_empty = Reconciler {
                aws: strata_aws::AwsClients::unconfigured(
                    self.aws.unavailable.clone().unwrap_or_default(),
                    self.aws.calls.clone(),
                ),
                ..self.clone()
            };
            let outcome = assume_empty.reconcile(project, false, true).await;
            return Plan {
                project_id: project.id,
                generation: project.generation,
                aws_configured: false,
                changes: outcome.changes,
                blocked: outcome.failure.map(|f| f.message),
            };
        }
        let outcome = self.reconcile(project, false, true).await;
        Plan {
            project_id: project.id,
            generation: project.generation,
            aws_configured: true,
            changes: outcome.changes,
            blocked: outcome
                .failure
                .map(|f| format!("{}: {}", f.reason, f.message)),
        }
    }

    /// One pass over every live project (and the environment-wide pass), then
    /// return: `strata reconcile`.
    pub async fn run_once(&self) -> Result<PassSummary, ReconcileError> {
        let services = strata_core::services::Services::new(self.store.clone(), self.clock.clone());
        let ids = services.live_project_ids().await?;
        let summary = self.run_for(&ids).await?;
        if self.aws.unavailable.is_none()
            && leases::claim(
                self,
                ENVIRONMENT_LEASE,
                Duration::from_secs(self.config.lease_secs),
            )
            .await?
        {
            let result = self.environment_pass().await;
            leases::release(self, ENVIRONMENT_LEASE).await?;
            result?;
        }
        Ok(summary)
    }

    /// One pass over the given projects.
    pub async fn run_for(&self, ids: &[Uuid]) -> Result<PassSummary, ReconcileError> {
        let ids = ids.to_vec();
        let mut summary = PassSummary {
            projects: ids.len(),
            ..PassSummary::default()
        };
        let visits: Vec<(Uuid, Result<Visit, ReconcileError>)> = futures::stream::iter(ids)
            .map(|id| async move { (id, self.visit(id, false).await) })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        for (id, visit) in visits {
            match visit {
                Ok(Visit::Skipped) => summary.skipped += 1,
                Ok(Visit::Done(o)) => {
                    match &o.failure {
                        None => summary.ready += 1,
                        Some(f) => summary
                            .failed
                            .push((id, format!("{}: {}", f.reason, f.message))),
                    }
                    summary
                        .changes
                        .extend(o.changes.into_iter().map(|c| (id, c)));
                }
                Err(e) => summary.failed.push((id, e.to_string())),
            }
        }
        Ok(summary)
    }

    /// The loop of `strata serve`: every poll interval, claim and reconcile due
    /// projects; once per resync interval, the environment-wide pass.
    pub async fn run(self, shutdown: CancellationToken) {
        if let Some(why) = &self.aws.unavailable {
            tracing::warn!(reason = %why, "AWS is not configured: projects will show AwsNotConfigured and be looked at once per resync interval");
        }
        let poll = Duration::from_millis(self.config.poll_ms.max(50));
        let resync = Duration::from_secs(self.config.resync_secs.max(1));
        let mut next_environment_pass = Instant::now();
        let mut next_gauges = Instant::now();
        loop {
            if Instant::now() >= next_environment_pass {
                next_environment_pass = Instant::now() + resync;
                if self.aws.unavailable.is_none() {
                    self.try_environment_pass().await;
                }
            }
            if Instant::now() >= next_gauges {
                next_gauges = Instant::now() + Duration::from_secs(10);
                self.update_gauges().await;
            }
            match state::due(&self, 64).await {
                Ok(ids) if !ids.is_empty() => {
                    let work = futures::stream::iter(ids)
                        .map(|id| {
                            let r = self.clone();
                            async move {
                                if let Err(e) = r.visit(id, true).await {
                                    tracing::error!(project.id = %id, error = %e, "reconcile could not run");
                                }
                            }
                        })
                        .buffer_unordered(self.config.concurrency.max(1))
                        .collect::<Vec<()>>();
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        _ = work => continue,
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the reconcile queue"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(poll) => {}
            }
        }
        tracing::info!("reconciler stopped");
    }

    async fn try_environment_pass(&self) {
        match leases::claim(
            self,
            ENVIRONMENT_LEASE,
            Duration::from_secs(self.config.lease_secs),
        )
        .await
        {
            Ok(true) => {
                // Another replica may have run it moments ago.
                let recent = crate::environment::stored_report::<crate::CostTagsReport>(
                    &self.store,
                    COST_TAGS_REPORT,
                )
                .await
                .ok()
                .flatten()
                .is_some_and(|r| {
                    let age = self.clock.now() - r.generated_at;
                    age < chrono::Duration::seconds(
                        i64::try_from(self.config.resync_secs).unwrap_or(600),
                    )
                });
                if recent {
                    let _ = leases::release(self, ENVIRONMENT_LEASE).await;
                    return;
                }
                match self.environment_pass().await {
                    Ok(pass) => tracing::info!(
                        report = COST_TAGS_REPORT,
                        keys = pass.cost_tags.keys.len(),
                        "environment pass done"
                    ),
                    Err(e) => tracing::warn!(error = %e, "environment pass failed"),
                }
                let _ = leases::release(self, ENVIRONMENT_LEASE).await;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot claim the environment pass"),
        }
    }

    async fn update_gauges(&self) {
        if let Ok(depth) = state::due_count(self).await {
            self.metrics
                .queue_depth
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
        if let Ok(counts) = state::ready_counts(self).await {
            for (ready, n) in counts {
                self.metrics
                    .projects
                    .get_or_create(&crate::metrics::ReadyLabels { ready })
                    .set(n);
            }
        }
    }
}
