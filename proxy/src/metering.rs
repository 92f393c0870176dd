//! Usage aggregated in memory per (project, key, model, minute) and sent to the
//! control plane in batches, so the store's write rate does not grow with the request
//! rate. A batch that fails to send is kept (with its id, so a retry after a lost
//! answer counts once) and sent again; shutdown flushes everything.

use foldhash::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use strata_contract::Secret;
use strata_contract::{UsageBatch, UsageRecord};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::control::ControlPlaneError;
use crate::normalize::Usage;

/// Records per batch: about 250 bytes each, well inside the control plane's 1 MiB
/// body limit (and its 10,000-record cap).
const BATCH_RECORDS: usize = 2_000;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
struct Slot {
    project: Uuid,
    key: Uuid,
    minute: DateTime<Utc>,
}

/// One finished (or abandoned) request.
#[derive(Debug, Clone)]
pub struct Metered {
    pub project: Uuid,
    pub key: Uuid,
    pub model: String,
    pub at: DateTime<Utc>,
    pub usage: Usage,
    pub error: bool,
    pub latency: Duration,
}

#[derive(Default)]
struct State {
    /// A slot's records, one per model (a key uses few models a minute): found by
    /// comparing the name, so a request's model is not copied to look its record up.
    open: HashMap<Slot, Vec<UsageRecord>>,
    /// Batches that could not be sent yet, oldest first.
    unsent: Vec<UsageBatch>,
}

pub struct Meter {
    http: reqwest::Client,
    url: String,
    credential: Secret,
    state: Mutex<State>,
}

impl Meter {
    pub fn new(http: reqwest::Client, control_plane: &str, credential: Secret) -> Self {
        Self {
            http,
            url: format!(
                "{}/internal/v1/proxy/usage",
                control_plane.trim_end_matches('/')
            ),
            credential,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn record(&self, m: Metered) {
        let minute =
            m.at.duration_trunc(chrono::Duration::minutes(1))
                .unwrap_or(m.at);
        let slot = Slot {
            project: m.project,
            key: m.key,
            minute,
        };
        let mut state = self.lock();
        let records = state.open.entry(slot).or_default();
        let tier = m.usage.service_tier;
        let at = match records
            .iter()
            .position(|r| r.model == m.model && r.service_tier == tier)
        {
            Some(at) => at,
            None => {
                records.push(UsageRecord {
                    project_id: m.project,
                    key_id: m.key,
                    model: m.model,
                    minute,
                    requests: 0,
                    errors: 0,
                    input_tokens: 0,
                    output_tokens: 0,
                    cached_tokens: 0,
                    cache_write_tokens: 0,
                    latency_ms_sum: 0,
                    service_tier: tier,
                });
                records.len() - 1
            }
        };
        let r = &mut records[at];
        r.requests += 1;
        r.errors += u64::from(m.error);
        r.input_tokens += m.usage.input_tokens;
        r.output_tokens += m.usage.output_tokens;
        r.cached_tokens += m.usage.cached_tokens;
        r.cache_write_tokens += m.usage.cache_write_tokens;
        r.latency_ms_sum += u64::try_from(m.latency.as_millis()).unwrap_or(u64::MAX);
    }

    /// Aggregates not yet accepted by the control plane.
    pub fn pending_records(&self) -> usize {
        let state = self.lock();
        state.open.values().map(Vec::len).sum::<usize>()
            + state.unsent.iter().map(|b| b.records.len()).sum::<usize>()
    }

    /// Sends everything aggregated so far. Returns how many records were accepted;
    /// on failure the rest stays queued.
    pub async fn flush(&self) -> Result<usize, ControlPlaneError> {
        {
            let mut state = self.lock();
            let records: Vec<UsageRecord> = state.open.drain().flat_map(|(_, r)| r).collect();
            for chunk in records.chunks(BATCH_RECORDS) {
                state.unsent.push(UsageBatch {
                    batch_id: Uuid::now_v7(),
                    records: chunk.to_vec(),
                });
            }
        }
        let mut sent = 0;
        loop {
            let Some(batch) = self.lock().unsent.first().cloned() else {
                return Ok(sent);
            };
            let response = self
                .http
                .post(&self.url)
                .bearer_auth(self.credential.expose())
                .timeout(Duration::from_secs(10))
                .json(&batch)
                .send()
                .await
                .map_err(ControlPlaneError::unreachable)?;
            let status = response.status();
            if status.is_client_error() {
                // The control plane will never take it (a bug, or records it finds
                // invalid): drop it loudly instead of blocking every later batch.
                let body = response.text().await.unwrap_or_default();
                tracing::error!(http.status = status.as_u16(), usage.records = batch.records.len(), error.body = %body, "the control plane refused a usage batch; dropped");
            } else if !status.is_success() {
                return Err(ControlPlaneError::Status(status));
            } else {
                sent += batch.records.len();
            }
            let mut state = self.lock();
            if state
                .unsent
                .first()
                .is_some_and(|b| b.batch_id == batch.batch_id)
            {
                state.unsent.remove(0);
            }
        }
    }

    /// Flushes every `interval` until `shutdown`, then once more, retrying for up to
    /// `drain` so nothing metered is lost on SIGTERM.
    pub async fn run(&self, interval: Duration, drain: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.flush().await {
                tracing::warn!(error.cause = %e, usage.pending = self.pending_records(), "cannot send usage yet; kept for the next flush");
            }
        }
        let deadline = tokio::time::Instant::now() + drain;
        loop {
            match self.flush().await {
                Ok(n) => {
                    tracing::info!(usage.records = n, "usage flushed at shutdown");
                    return;
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error.cause = %e, "flushing usage at shutdown; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    tracing::error!(error.cause = %e, usage.lost = self.pending_records(), "usage could not be sent before shutdown");
                    return;
                }
            }
        }
    }
}
