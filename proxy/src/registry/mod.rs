//! Who owns each Responses API id, as the proxy uses it: record a new response, look
//! up the project that owns an id (cached: an id never changes hands), claim
//! background responses to follow, and report one finished.
//!
//! Recording stays off the request path. The creating replica knows the owner at
//! once; the others learn it from Redis (when configured) and from the control
//! plane's copy, each written in groups of the records of the last few milliseconds.
//! A replica that does not know an id looks once more after those have had time to
//! land before it answers 404, so an id fresh from another replica is found and a
//! foreign one never is. A background response still waits for the
//! control plane, which hands it to a follower.

mod cache;
mod group;
mod shared;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use strata_contract::Secret;
use strata_contract::{ResponseClaim, ResponseCompletion, ResponseRecord};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use self::cache::OwnerCache;
use self::group::{Backlog, GroupOutcome, GroupQueue, GroupSender, Message};
pub use self::shared::SharedOwners;

/// Owners remembered per process (an entry is ~100 bytes).
const MAX_CACHED_OWNERS: usize = 100_000;
/// How long a replica waits before asking again about an id the control plane does
/// not know: longer than a group takes to land.
const RECHECK_UNKNOWN: Duration = Duration::from_millis(250);
/// How long a record may wait for the control plane before creates wait until it
/// waits less: a control plane that cannot keep up slows creates down to its pace, so
/// records land within `RECHECK_UNKNOWN` (leaving a group's time) and none is given up.
const CATCH_UP_AFTER: Duration = Duration::from_millis(150);

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
    owners: RwLock<OwnerCache>,
    /// Owners in the Redis the replicas share, when one is configured.
    shared: Option<SharedOwners>,
    /// To the task that sends records in groups (started with the first record).
    pending: std::sync::OnceLock<GroupQueue>,
    /// Records given up after the control plane refused them for too long.
    pub dropped: Counter,
    /// Records queued and not yet taken by the control plane.
    pub unsent: Gauge,
    /// Creates held back until the control plane caught up.
    pub held: Counter,
    /// How far behind the control plane is, and the outcome of the latest group the
    /// sender tried, for held creates.
    backlog: Arc<Backlog>,
    outcomes: watch::Sender<GroupOutcome>,
    catch_up_after: Duration,
}

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
    pub fn new(
        http: reqwest::Client,
        control_plane: &str,
        credential: Secret,
        shared: Option<SharedOwners>,
    ) -> Self {
        Self {
            http,
            base: format!(
                "{}/internal/v1/proxy/responses",
                control_plane.trim_end_matches('/')
            ),
            credential,
            owners: RwLock::new(OwnerCache::new(MAX_CACHED_OWNERS)),
            shared,
            pending: std::sync::OnceLock::new(),
            dropped: Counter::default(),
            unsent: Gauge::default(),
            held: Counter::default(),
            backlog: Arc::new(Backlog::new()),
            outcomes: watch::Sender::new(GroupOutcome::Taken),
            catch_up_after: CATCH_UP_AFTER,
        }
    }

    fn remember(&self, record: &ResponseRecord) {
        let owner = Owner {
            project: record.project_id,
            model: Arc::from(record.model.as_str()),
        };
        self.remember_owner(&record.id, &owner);
    }

    fn remember_owner(&self, id: &str, owner: &Owner) {
        let retired = self
            .owners
            .write()
            .ok()
            .and_then(|mut owners| owners.insert(id, owner));
        // The lock is released by now: the other threads' lookups do not wait for this.
        drop(retired);
    }

    async fn call(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        authorized(request, &self.credential)
            .send()
            .await
            .map_err(|e| RegistryError::Unavailable(e.without_url().to_string()))
    }

    /// Records a new response's owner before its id reaches the client. This replica
    /// knows it at once; Redis (when configured) and the control plane are told off
    /// the request path. Only a background response waits for the control plane,
    /// which hands it to a follower; and any create while the control plane is more
    /// than `catch_up_after` behind waits until it is less.
    pub async fn record(&self, record: &ResponseRecord) -> Result<(), RegistryError> {
        // One record the control plane refuses would fail its whole group.
        record.validate().map_err(|problems| {
            let fields: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect();
            RegistryError::Invalid(fields.join("; "))
        })?;
        self.remember(record);
        if let Some(shared) = &self.shared {
            shared.insert(record);
        }
        if record.background {
            let (done, outcome) = oneshot::channel();
            self.send(Message::record(record.clone(), Some(done)))?;
            return outcome.await.unwrap_or_else(|_| Err(stopping()));
        }
        let behind = self.backlog.behind() > self.catch_up_after;
        self.send(Message::record(record.clone(), None))?;
        if behind {
            self.held.inc();
            // Subscribed before the backlog is read again: an outcome told after this
            // wakes the wait, one told before shows in the backlog (updated first).
            let mut outcomes = self.outcomes.subscribe();
            while self.backlog.behind() > self.catch_up_after {
                if outcomes.changed().await.is_err() {
                    return Err(stopping());
                }
                if let GroupOutcome::Refused(e) = &*outcomes.borrow_and_update() {
                    return Err(e.clone());
                }
            }
        }
        Ok(())
    }

    /// Sends what is queued for the control plane and waits for it (after one
    /// group's attempts at most): for a proxy that is stopping.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.send(Message::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }

    fn send(&self, message: Message) -> Result<(), RegistryError> {
        let queue = self.pending.get_or_init(|| {
            GroupSender {
                http: self.http.clone(),
                base: self.base.clone(),
                credential: self.credential.clone(),
                max_unsent: group::MAX_UNSENT,
                dropped: self.dropped.clone(),
                unsent: self.unsent.clone(),
                backlog: self.backlog.clone(),
                outcomes: self.outcomes.clone(),
                gather: group::GATHER,
            }
            .spawn()
        });
        if matches!(message, Message::Record { .. }) {
            self.unsent.inc();
        }
        queue.send(message)
    }

    /// The project that created response `id`, and with which model.
    pub async fn owner(&self, id: &str) -> Result<Owner, RegistryError> {
        if let Some(owner) = self.owners.read().ok().and_then(|o| o.get(id).cloned()) {
            return Ok(owner);
        }
        match self.look_up(id).await {
            // Perhaps created on another replica a moment ago, on its way here still.
            Err(RegistryError::Unknown) => {
                tokio::time::sleep(RECHECK_UNKNOWN).await;
                self.look_up(id).await
            }
            found => found,
        }
    }

    /// Redis's answer about `id` (when configured), else the control plane's.
    async fn look_up(&self, id: &str) -> Result<Owner, RegistryError> {
        if let Some(shared) = &self.shared {
            match shared.get(id).await {
                Ok(Some(owner)) => {
                    self.remember_owner(id, &owner);
                    return Ok(owner);
                }
                Ok(None) => {}
                // The control plane has every owner too.
                Err(e) => {
                    tracing::warn!(error.cause = %e, "cannot read a response's owner from Redis")
                }
            }
        }
        self.ask(id).await
    }

    /// The control plane's answer about `id`.
    async fn ask(&self, id: &str) -> Result<Owner, RegistryError> {
        // Ids reach this only after the proxy checked them (letters, digits, _ and -).
        let response = self
            .call(self.http.get(format!("{}/{id}", self.base)))
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
            .call(self.http.post(format!("{}/claim", self.base)).json(claim))
            .await?;
        read_json(response).await
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
            .call(
                self.http
                    .post(format!("{}/{id}/complete", self.base))
                    .json(completion),
            )
            .await?;
        read_json::<Applied>(response).await.map(|a| a.applied)
    }
}

/// A successful answer's JSON body; anything else means the control plane is not
/// available to this proxy now.
async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, RegistryError> {
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

/// A request to the control plane with the proxy's credential and its timeout.
fn authorized(request: reqwest::RequestBuilder, credential: &Secret) -> reqwest::RequestBuilder {
    request
        .bearer_auth(credential.expose())
        .timeout(Duration::from_secs(5))
}

fn stopping() -> RegistryError {
    RegistryError::Unavailable("the proxy is stopping".into())
}

#[cfg(test)]
mod tests {
    use redis::aio::{ConnectionManager, ConnectionManagerConfig};

    use super::*;

    /// A replica's registry on the Redis of STRATA_TEST_REDIS_URL (the machine's by
    /// default), with a control plane at `control_plane`.
    async fn replica(control_plane: &str, prefix: &str) -> ResponseRegistry {
        let url = std::env::var("STRATA_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let client = redis::Client::open(url.as_str()).unwrap();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(0);
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .unwrap_or_else(|e| {
                panic!("no Redis at {url} ({e}): start one (redis-server --port 6379 --save '') or set STRATA_TEST_REDIS_URL; scripts/test does this")
            });
        ResponseRegistry::new(
            reqwest::Client::new(),
            control_plane,
            Secret::new("proxy-credential"),
            Some(SharedOwners::new(connection, prefix)),
        )
    }

    #[tokio::test]
    async fn a_create_waits_while_the_control_plane_is_behind_and_not_past_a_refusal() {
        let away = control_plane_away();
        let mut registry = ResponseRegistry::new(
            reqwest::Client::new(),
            &away,
            Secret::new("proxy-credential"),
            None,
        );
        registry.catch_up_after = Duration::from_millis(20);
        let record = |i: u32| ResponseRecord {
            id: format!("resp_{i}"),
            ..new_record()
        };
        // Not waited for: the answer goes out while the record is queued.
        registry.record(&record(1)).await.unwrap();
        assert_eq!(registry.held.get(), 0);
        // Its group's attempts take 300 ms; once it has waited longer than 20 ms the
        // next create waits for the group's outcome, a refusal, and goes on with it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(
            registry.record(&record(2)).await,
            Err(RegistryError::Unavailable(_))
        ));
        assert_eq!(registry.held.get(), 1);
        assert_eq!(registry.unsent.get(), 2, "all kept");
        // Known here all along.
        assert!(registry.owner("resp_1").await.is_ok());
    }

    #[tokio::test]
    async fn a_held_create_goes_once_the_control_plane_has_caught_up_not_after_its_own_record() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (cp, url) = group::tests::ControlPlane::start(0, Some(gate.clone())).await;
        let mut registry =
            ResponseRegistry::new(reqwest::Client::new(), &url, Secret::new("c"), None);
        registry.catch_up_after = Duration::from_millis(200);
        let record = |i: u32| ResponseRecord {
            id: format!("resp_{i}"),
            ..new_record()
        };
        for i in 1..=3 {
            registry.record(&record(i)).await.unwrap();
        }
        // The three share a group (queued within its 10 ms), held at the control plane.
        assert_eq!(cp.arrivals(1).await, [["resp_1", "resp_2", "resp_3"]]);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let registry = Arc::new(registry);
        let fourth = tokio::spawn({
            let registry = registry.clone();
            async move { registry.record(&record(4)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!fourth.is_finished(), "250 ms behind: the fourth waits");
        assert_eq!(registry.held.get(), 1);
        // The control plane takes the first group: what waits now is the fourth,
        // queued just now, so it goes on before its own group is taken.
        gate.add_permits(1);
        tokio::time::timeout(Duration::from_secs(3), fourth)
            .await
            .expect("released once the control plane caught up")
            .unwrap()
            .unwrap();
        assert_eq!(cp.arrivals(2).await[1], ["resp_4"]);
        assert_eq!(
            cp.batches.lock().unwrap().len(),
            1,
            "its own group still held"
        );
        assert_eq!(registry.unsent.get(), 1);
    }

    /// A port nothing listens on: every call to the control plane fails.
    fn control_plane_away() -> String {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", closed.local_addr().unwrap())
    }

    /// Replicas sharing one Redis prefix, their control plane away.
    async fn replicas_away<const N: usize>() -> [ResponseRegistry; N] {
        let away = control_plane_away();
        let prefix = format!("strata-test-{}", Uuid::now_v7());
        let mut replicas = Vec::with_capacity(N);
        for _ in 0..N {
            replicas.push(replica(&away, &prefix).await);
        }
        replicas.try_into().unwrap_or_else(|_| unreachable!())
    }

    /// Waits until Redis has an owner for `id`.
    async fn written(shared: &SharedOwners, id: &str) {
        let started = std::time::Instant::now();
        while shared.get(id).await.unwrap().is_none() {
            assert!(started.elapsed() < Duration::from_secs(3), "never written");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A plain response's record, metered, with an id of its own.
    pub(super) fn new_record() -> ResponseRecord {
        ResponseRecord {
            id: format!("resp_{}", Uuid::now_v7().simple()),
            project_id: Uuid::now_v7(),
            key_id: Uuid::now_v7(),
            model: "openai.gpt-oss-20b".into(),
            background: false,
            status: "completed".into(),
            metered: true,
            claimed_by: None,
        }
    }

    #[tokio::test]
    async fn replicas_sharing_redis_know_a_new_owner_while_the_control_plane_is_away() {
        let [a, b] = replicas_away().await;
        let record = new_record();
        a.record(&record).await.unwrap();
        let started = std::time::Instant::now();
        let owner = loop {
            match b.owner(&record.id).await {
                Ok(owner) => break owner,
                Err(RegistryError::Unavailable(_)) => {}
                Err(e) => panic!("{e}"),
            }
            assert!(started.elapsed() < Duration::from_secs(3), "never shared");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(owner.project, record.project_id);
        assert_eq!(&*owner.model, "openai.gpt-oss-20b");
        // An id nobody recorded is not found there (and the control plane is away).
        assert!(matches!(
            b.owner("resp_nobody").await,
            Err(RegistryError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn an_owner_in_redis_is_never_replaced() {
        let [a, b, reader] = replicas_away().await;
        let first = new_record();
        let other = ResponseRecord {
            project_id: Uuid::now_v7(),
            model: "openai.gpt-oss-120b".into(),
            ..first.clone()
        };
        a.record(&first).await.unwrap();
        // Written once a reader finds it; then the same id from another project.
        let shared = reader.shared.as_ref().unwrap();
        written(shared, &first.id).await;
        b.record(&other).await.unwrap();
        // Another id recorded after it on the same replica: once it is there, the
        // claim on the first one has been through Redis too.
        let later = new_record();
        b.record(&later).await.unwrap();
        written(shared, &later.id).await;
        let owner = shared.get(&first.id).await.unwrap().unwrap();
        assert_eq!(owner.project, first.project_id);
        assert_eq!(&*owner.model, "openai.gpt-oss-20b");
    }
}
