//! Following the control plane's policy snapshot by long poll. The proxy answers from
//! the last snapshot while the control plane is away, up to a staleness limit, then
//! fails closed.

use foldhash::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::control::ControlPlaneError;
use strata_core::config::Secret;
use strata_core::domain::{PolicySnapshot, SnapshotModel, SnapshotProject};
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
}

impl From<PolicySnapshot> for Policy {
    fn from(s: PolicySnapshot) -> Self {
        Self {
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
