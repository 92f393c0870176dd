//! The control plane's record of Responses API ids, as the proxy uses it: record a new
//! response (before its id reaches the client, so every replica can check it), look
//! up the project that owns an id (cached: an id never changes hands), claim
//! background responses to follow, and report one finished.
//!
//! Records are committed in groups: one request to the control plane carries every
//! response created while the previous one was on its way, and each creation waits
//! for its group. Under load that is one transaction for dozens of responses; alone,
//! a response waits no longer than before.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use strata_contract::Secret;
use strata_contract::{
    MAX_RESPONSE_BATCH, ResponseBatch, ResponseClaim, ResponseCompletion, ResponseRecord,
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Owners remembered per process (an entry is ~100 bytes).
const MAX_CACHED_OWNERS: usize = 100_000;
/// Attempts to record a new response before giving up.
const RECORD_ATTEMPTS: u32 = 3;

/// Who created a response: the project, and the model (whose Mantle prefix later
/// calls on the id go to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub project: Uuid,
    pub model: Arc<str>,
}

pub struct ResponseRegistry {
    http: reqwest::Client,
    base: String,
    credential: Secret,
    owners: RwLock<HashMap<String, Owner>>,
    /// To the task that sends records in groups (started with the first record).
    pending: std::sync::OnceLock<mpsc::UnboundedSender<Pending>>,
}

/// A record waiting for its group, and who waits for the outcome.
type Pending = (ResponseRecord, oneshot::Sender<Result<(), RegistryError>>);

#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("the control plane does not know this response")]
    Unknown,
    #[error("cannot reach the control plane: {0}")]
    Unavailable(String),
    #[error("the control plane would refuse this record: {0}")]
    Invalid(String),
}

impl ResponseRegistry {
    pub fn new(http: reqwest::Client, control_plane: &str, credential: Secret) -> Self {
        Self {
            http,
            base: format!(
                "{}/internal/v1/proxy/responses",
                control_plane.trim_end_matches('/')
            ),
            credential,
            owners: RwLock::new(HashMap::new()),
            pending: std::sync::OnceLock::new(),
        }
    }

    fn remember(&self, record: &ResponseRecord) {
        if let Ok(mut owners) = self.owners.write() {
            if owners.len() >= MAX_CACHED_OWNERS {
                owners.clear();
            }
            owners.insert(
                record.id.clone(),
                Owner {
                    project: record.project_id,
                    model: Arc::from(record.model.as_str()),
                },
            );
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        authorized(request, &self.credential)
            .send()
            .await
            .map_err(|e| RegistryError::Unavailable(e.without_url().to_string()))
    }

    /// Records a new response and waits until the control plane has it, as the
    /// client cannot use its id on another replica until then.
    pub async fn record(&self, record: &ResponseRecord) -> Result<(), RegistryError> {
        // One record the control plane refuses would fail its whole group.
        record.validate().map_err(|problems| {
            let fields: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect();
            RegistryError::Invalid(fields.join("; "))
        })?;
        let sender = self.pending.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            let group = GroupSender {
                http: self.http.clone(),
                base: self.base.clone(),
                credential: self.credential.clone(),
            };
            tokio::spawn(group.run(receiver));
            sender
        });
        let (done, outcome) = oneshot::channel();
        sender
            .send((record.clone(), done))
            .map_err(|_| RegistryError::Unavailable("the proxy is stopping".into()))?;
        outcome
            .await
            .unwrap_or_else(|_| Err(RegistryError::Unavailable("the proxy is stopping".into())))?;
        self.remember(record);
        Ok(())
    }

    /// The project that created response `id`, and with which model.
    pub async fn owner(&self, id: &str) -> Result<Owner, RegistryError> {
        if let Some(owner) = self.owners.read().ok().and_then(|o| o.get(id).cloned()) {
            return Ok(owner);
        }
        // Ids reach this only after the proxy checked them (letters, digits, _ and -).
        let response = self
            .send(self.http.get(format!("{}/{id}", self.base)))
            .await?;
        match response.status() {
            s if s.is_success() => {
                let record: ResponseRecord = response
                    .json()
                    .await
                    .map_err(|e| RegistryError::Unavailable(e.without_url().to_string()))?;
                self.remember(&record);
                Ok(Owner {
                    project: record.project_id,
                    model: Arc::from(record.model.as_str()),
                })
            }
            reqwest::StatusCode::NOT_FOUND => Err(RegistryError::Unknown),
            s => Err(RegistryError::Unavailable(format!("HTTP {}", s.as_u16()))),
        }
    }

    /// Background responses for this replica to follow (its own first; others' once
    /// their claims lapse).
    pub async fn claim(&self, claim: &ResponseClaim) -> Result<Vec<ResponseRecord>, RegistryError> {
        let response = self
            .send(self.http.post(format!("{}/claim", self.base)).json(claim))
            .await?;
        if !response.status().is_success() {
            return Err(RegistryError::Unavailable(format!(
                "HTTP {}",
                response.status().as_u16()
            )));
        }
        response
            .json()
            .await
            .map_err(|e| RegistryError::Unavailable(e.without_url().to_string()))
    }

    /// Reports a finished background response; true when this report metered it.
    pub async fn complete(
        &self,
        id: &str,
        completion: &ResponseCompletion,
    ) -> Result<bool, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Applied {
            applied: bool,
        }
        let response = self
            .send(
                self.http
                    .post(format!("{}/{id}/complete", self.base))
                    .json(completion),
            )
            .await?;
        if !response.status().is_success() {
            return Err(RegistryError::Unavailable(format!(
                "HTTP {}",
                response.status().as_u16()
            )));
        }
        response
            .json::<Applied>()
            .await
            .map(|a| a.applied)
            .map_err(|e| RegistryError::Unavailable(e.without_url().to_string()))
    }
}

/// A request to the control plane with the proxy's credential and its timeout.
fn authorized(request: reqwest::RequestBuilder, credential: &Secret) -> reqwest::RequestBuilder {
    request
        .bearer_auth(credential.expose())
        .timeout(Duration::from_secs(5))
}

/// Sends the records queued while its last request was on its way as one request.
struct GroupSender {
    http: reqwest::Client,
    base: String,
    credential: Secret,
}

impl GroupSender {
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Pending>) {
        let mut group: Vec<Pending> = Vec::new();
        while let Some(first) = queue.recv().await {
            group.push(first);
            while group.len() < MAX_RESPONSE_BATCH {
                match queue.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            let records: Vec<ResponseRecord> = group.iter().map(|(r, _)| r.clone()).collect();
            let outcome = self.record_all(records).await;
            for (_, done) in group.drain(..) {
                // The creation may have been dropped (its client left): nobody waits.
                let _ = done.send(outcome.clone());
            }
        }
    }

    /// One request for the group, retried briefly.
    async fn record_all(&self, records: Vec<ResponseRecord>) -> Result<(), RegistryError> {
        let batch = ResponseBatch { records };
        let url = format!("{}/batch", self.base);
        let mut last = String::new();
        for attempt in 0..RECORD_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            let sent = authorized(self.http.post(&url).json(&batch), &self.credential)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                // A control plane older than this proxy: one record at a time.
                Ok(r) if matches!(r.status().as_u16(), 404 | 405) => {
                    return self.record_each(&batch.records).await;
                }
                Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
                Err(e) => last = e.without_url().to_string(),
            }
        }
        Err(RegistryError::Unavailable(last))
    }

    async fn record_each(&self, records: &[ResponseRecord]) -> Result<(), RegistryError> {
        for record in records {
            let r = authorized(self.http.post(&self.base).json(record), &self.credential)
                .send()
                .await
                .map_err(|e| RegistryError::Unavailable(e.without_url().to_string()))?;
            if !r.status().is_success() {
                return Err(RegistryError::Unavailable(format!(
                    "HTTP {}",
                    r.status().as_u16()
                )));
            }
        }
        Ok(())
    }
}
