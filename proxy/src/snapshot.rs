//! Following the control plane's policy snapshot by long poll. The proxy answers from
//! the last snapshot while the control plane is away, up to a staleness limit, then
//! fails closed.

use foldhash::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::control::ControlPlaneError;
use crate::limits::SharedBudget;
use strata_contract::Secret;
use strata_contract::{PolicySnapshot, SnapshotModel, SnapshotProject};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a poll asks the control plane to wait for a change.
const POLL_WAIT_SECS: u64 = 20;

/// A snapshot indexed for per-request lookups (foldhash: SipHash was a visible part of
/// a request's instructions under callgrind, and these keys come from the control plane).
#[derive(Debug)]
pub struct Policy {
    pub version: String,
    pub projects: HashMap<Uuid, SnapshotProject>,
    pub revoked_keys: HashSet<Uuid>,
    /// The catalog by model id.
    pub models: HashMap<String, SnapshotModel>,
    /// The hard budgets (beyond each project's own) covering a project's requests…
    pub project_budgets: HashMap<Uuid, Arc<[SharedBudget]>>,
    /// … and a key's.
    pub key_budgets: HashMap<Uuid, Arc<[SharedBudget]>>,
    no_budgets: Arc<[SharedBudget]>,
}

impl Policy {
    /// The hard budgets a request of `project` with `key` counts against.
    pub fn budgets_for(&self, project: Uuid, key: Uuid) -> Arc<[SharedBudget]> {
        match (
            self.project_budgets.get(&project),
            self.key_budgets.get(&key),
        ) {
            (None, None) => self.no_budgets.clone(),
            (Some(b), None) | (None, Some(b)) => b.clone(),
            (Some(p), Some(k)) => p.iter().chain(k.iter()).cloned().collect(),
        }
    }
}

impl From<PolicySnapshot> for Policy {
    fn from(s: PolicySnapshot) -> Self {
        let mut by_project: HashMap<Uuid, Vec<SharedBudget>> = HashMap::default();
        let mut by_key: HashMap<Uuid, Vec<SharedBudget>> = HashMap::default();
        for budget in &s.budgets {
            let shared = SharedBudget::from(budget);
            for project in &budget.projects {
                by_project.entry(*project).or_default().push(shared.clone());
            }
            if let Some(key) = budget.key {
                by_key.entry(key).or_default().push(shared.clone());
            }
        }
        let share = |m: HashMap<Uuid, Vec<SharedBudget>>| {
            m.into_iter()
                .map(|(id, budgets)| (id, Arc::from(budgets)))
                .collect()
        };
        Self {
            project_budgets: share(by_project),
            key_budgets: share(by_key),
            no_budgets: Arc::from(Vec::new()),
            version: s.version,
            projects: s.projects.into_iter().map(|p| (p.id, p)).collect(),
            revoked_keys: s.revoked_keys.into_iter().collect(),
            models: s
                .models
                .into_iter()
                .map(|m| (m.id.as_str().to_owned(), m))
                .collect(),
        }
    }
}

struct Held {
    policy: Arc<Policy>,
    /// Last time the control plane answered (a new snapshot or "no change").
    confirmed_at: Instant,
}

pub struct SnapshotFollower {
    http: reqwest::Client,
    url: String,
    credential: Secret,
    max_staleness: Duration,
    held: RwLock<Option<Held>>,
}

impl SnapshotFollower {
    pub fn new(
        http: reqwest::Client,
        control_plane: &str,
        credential: Secret,
        max_staleness: Duration,
    ) -> Self {
        Self {
            http,
            url: format!(
                "{}/internal/v1/proxy/snapshot",
                control_plane.trim_end_matches('/')
            ),
            credential,
            max_staleness,
            held: RwLock::new(None),
        }
    }

    /// The policy to decide with, or `None` when there is none fresh enough (never
    /// loaded, or not confirmed within the staleness limit): fail closed.
    pub fn current(&self) -> Option<Arc<Policy>> {
        let held = self.held.read().ok()?;
        let held = held.as_ref()?;
        (held.confirmed_at.elapsed() <= self.max_staleness).then(|| held.policy.clone())
    }

    /// Time since the control plane last answered, if ever.
    pub fn age(&self) -> Option<Duration> {
        let held = self.held.read().ok()?;
        held.as_ref().map(|h| h.confirmed_at.elapsed())
    }

    fn version(&self) -> Option<String> {
        let held = self.held.read().ok()?;
        held.as_ref().map(|h| h.policy.version.clone())
    }

    /// One poll: waits up to `wait` seconds for a version newer than the one held.
    pub async fn poll_once(&self, wait: u64) -> Result<(), ControlPlaneError> {
        // Versions are made of letters, digits, '.' and '-': no escaping needed.
        let url = match self.version() {
            Some(v) => format!("{}?wait={wait}&after={v}", self.url),
            None => format!("{}?wait={wait}", self.url),
        };
        let resp = self
            .http
            .get(url)
            .bearer_auth(self.credential.expose())
            .timeout(Duration::from_secs(wait + 10))
            .send()
            .await
            .map_err(ControlPlaneError::unreachable)?;
        match resp.status() {
            reqwest::StatusCode::NOT_MODIFIED => {
                if let Ok(mut held) = self.held.write()
                    && let Some(h) = held.as_mut()
                {
                    h.confirmed_at = Instant::now();
                }
                Ok(())
            }
            s if s.is_success() => {
                let snapshot: PolicySnapshot =
                    resp.json().await.map_err(ControlPlaneError::body)?;
                if let Ok(mut held) = self.held.write() {
                    *held = Some(Held {
                        policy: Arc::new(snapshot.into()),
                        confirmed_at: Instant::now(),
                    });
                }
                Ok(())
            }
            s => Err(ControlPlaneError::Status(s)),
        }
    }

    /// Polls until `shutdown`, backing off while the control plane is away.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.poll_once(POLL_WAIT_SECS) => r,
            };
            match result {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    tracing::warn!(error.cause = %e, retry_in_ms = backoff.as_millis() as u64, "cannot follow the policy snapshot");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use strata_contract::{BudgetPeriod, BudgetScope, SnapshotBudget};

    use super::*;

    fn budget(
        n: u128,
        scope: BudgetScope,
        projects: Vec<Uuid>,
        key: Option<Uuid>,
    ) -> SnapshotBudget {
        SnapshotBudget {
            id: Uuid::from_u128(n),
            name: format!("b{n}"),
            scope,
            target: "t".into(),
            period: BudgetPeriod::Month,
            amount_micros: 1_000,
            projects,
            key,
        }
    }

    #[test]
    fn a_request_counts_against_its_projects_budgets_and_its_keys() {
        let (p1, p2, k1, k2) = (
            Uuid::from_u128(101),
            Uuid::from_u128(102),
            Uuid::from_u128(201),
            Uuid::from_u128(202),
        );
        let policy = Policy::from(PolicySnapshot {
            version: "v".into(),
            generated_at: Utc::now(),
            projects: Vec::new(),
            revoked_keys: Vec::new(),
            models: Vec::new(),
            budgets: vec![
                budget(1, BudgetScope::Team, vec![p1, p2], None),
                budget(2, BudgetScope::Environment, vec![p1], None),
                budget(3, BudgetScope::Key, Vec::new(), Some(k1)),
            ],
        });
        let ids = |p, k| -> Vec<u128> {
            policy
                .budgets_for(p, k)
                .iter()
                .map(|b| b.id.as_u128())
                .collect()
        };
        assert_eq!(ids(p1, k1), [1, 2, 3]);
        assert_eq!(ids(p1, k2), [1, 2]);
        assert_eq!(ids(p2, k2), [1]);
        assert_eq!(ids(Uuid::from_u128(103), k1), [3]);
        assert!(ids(Uuid::from_u128(103), k2).is_empty());
        assert_eq!(
            &*policy.budgets_for(p2, k2)[0].label,
            "the team 't' budget 'b1'"
        );
    }
}
