//! Sends response records to the control plane in groups, off the request path: one
//! request carries every record queued during the last few milliseconds (or while
//! the previous request was on its way). A record someone waits for (a background
//! response, which the control plane hands to a follower) is sent at once.
//!
//! A group the control plane does not take is kept and tried again, with a growing
//! pause, so an outage delays records instead of losing them; only past
//! `max_unsent` records are the oldest given up (and counted). The sender keeps the
//! age of the oldest record not taken yet (`Backlog`) and tells each group's outcome,
//! so creates can wait while the control plane is too far behind.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use reqwest::header::CONTENT_TYPE;
use serde::{Serialize, Serializer};
use strata_contract::{MAX_RESPONSE_BATCH, ResponseRecord, Secret};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::{RegistryError, authorized};

/// How long a record waits for others to share its request.
pub(super) const GATHER: Duration = Duration::from_millis(10);
/// Attempts per group before its waiters are told it failed.
const RECORD_ATTEMPTS: u32 = 3;
/// Records kept while the control plane does not take them (an entry is ~200 bytes).
pub(super) const MAX_UNSENT: usize = 200_000;
/// The longest pause between tries while the control plane refuses or is away.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// What the sender is asked to do.
pub(super) enum Message {
    /// Send this record; `done`, when some creation waits for the outcome (its
    /// group then goes without waiting for company).
    Record {
        record: ResponseRecord,
        done: Option<oneshot::Sender<Result<(), RegistryError>>>,
        queued_at: Instant,
    },
    /// Send everything queued now, then answer (after one group's attempts at most).
    Flush(oneshot::Sender<()>),
}

/// What became of the latest group: creates held back while the control plane is
/// behind go on once it has taken enough, or when it refuses.
#[derive(Debug, Clone)]
pub(super) enum GroupOutcome {
    Taken,
    Refused(RegistryError),
}

impl Message {
    /// A record queued now.
    pub fn record(
        record: ResponseRecord,
        done: Option<oneshot::Sender<Result<(), RegistryError>>>,
    ) -> Self {
        Self::Record {
            record,
            done,
            queued_at: Instant::now(),
        }
    }
}

struct Queued {
    record: ResponseRecord,
    done: Option<oneshot::Sender<Result<(), RegistryError>>>,
    queued_at: Instant,
}

/// How far behind the control plane is: since when the oldest record it has not
/// taken waits. The sender keeps it; creates read it.
pub(super) struct Backlog {
    epoch: Instant,
    /// Microseconds from `epoch` to the oldest unsent record's queueing, plus one;
    /// zero while nothing waits.
    oldest: AtomicU64,
}

impl Backlog {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            oldest: AtomicU64::new(0),
        }
    }

    /// How long the oldest record the control plane has not taken has waited.
    pub fn behind(&self) -> Duration {
        match self.oldest.load(Ordering::Acquire) {
            0 => Duration::ZERO,
            since => (self.epoch + Duration::from_micros(since - 1)).elapsed(),
        }
    }

    fn oldest_is(&self, queued: Option<&Queued>) {
        let since = queued.map_or(0, |q| {
            let micros = q
                .queued_at
                .saturating_duration_since(self.epoch)
                .as_micros();
            u64::try_from(micros).unwrap_or(u64::MAX - 1) + 1
        });
        self.oldest.store(since, Ordering::Release);
    }
}

pub(super) struct GroupSender {
    pub http: reqwest::Client,
    pub base: String,
    pub credential: Secret,
    /// Records kept at most while the control plane does not take them.
    pub max_unsent: usize,
    pub dropped: Counter,
    /// Records queued and not yet taken by the control plane (nor given up).
    pub unsent: Gauge,
    pub backlog: Arc<Backlog>,
    pub outcomes: watch::Sender<GroupOutcome>,
    /// How long a record waits for others to share its request.
    pub gather: Duration,
}

/// The way into a running `GroupSender`.
pub(super) struct GroupQueue {
    sender: mpsc::UnboundedSender<Message>,
    urgent: Arc<Notify>,
}

impl GroupQueue {
    /// Queues `message`; one someone waits for sends its group at once. Fails only
    /// once the sender has stopped.
    pub fn send(&self, message: Message) -> Result<(), RegistryError> {
        let urgent = match &message {
            Message::Record { done, .. } => done.is_some(),
            Message::Flush(_) => true,
        };
        self.sender.send(message).map_err(|_| super::stopping())?;
        if urgent {
            // After the send: once woken, the sender finds the message queued.
            self.urgent.notify_one();
        }
        Ok(())
    }
}

impl GroupSender {
    /// Starts sending; answers the way in.
    pub fn spawn(self) -> GroupQueue {
        let (sender, receiver) = mpsc::unbounded_channel();
        let urgent = Arc::new(Notify::new());
        tokio::spawn(self.run(receiver, urgent.clone()));
        GroupQueue { sender, urgent }
    }

    async fn run(self, mut queue: mpsc::UnboundedReceiver<Message>, urgent_rung: Arc<Notify>) {
        let mut group: VecDeque<Queued> = VecDeque::new();
        let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
        let mut failures: u32 = 0;
        let mut open = true;
        while open || !group.is_empty() {
            let mut urgent = !flushes.is_empty();
            if group.is_empty() && flushes.is_empty() {
                match queue.recv().await {
                    Some(m) => urgent = take(m, &mut group, &mut flushes),
                    None => break,
                }
            }
            self.backlog.oldest_is(group.front());
            urgent |= drain(&mut queue, &mut group, &mut flushes, &mut open);
            // Wait a little for company unless someone waits for this group. The queue
            // is read when the time is up, so an arrival meanwhile wakes no one; one
            // someone waits for rings `urgent`.
            if open && !urgent && group.len() < MAX_RESPONSE_BATCH {
                tokio::select! {
                    () = tokio::time::sleep(self.gather) => {}
                    () = urgent_rung.notified() => {}
                }
                drain(&mut queue, &mut group, &mut flushes, &mut open);
            }
            if group.is_empty() {
                answer(&mut flushes);
                continue;
            }
            let n = group.len().min(MAX_RESPONSE_BATCH);
            match self.record_all(&group, n).await {
                Ok(()) => {
                    failures = 0;
                    taken(&self.unsent, n);
                    for q in group.drain(..n) {
                        if let Some(done) = q.done {
                            // The creation may have been dropped (its client left).
                            let _ = done.send(Ok(()));
                        }
                    }
                    // The backlog first: held creates read it once told.
                    self.backlog.oldest_is(group.front());
                    self.outcomes.send_replace(GroupOutcome::Taken);
                    if group.is_empty() {
                        answer(&mut flushes);
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::error!(records = group.len(), error.cause = %e, "the control plane did not take the responses' owners; they are kept and retried");
                    for q in group.iter_mut().take(n) {
                        if let Some(done) = q.done.take() {
                            let _ = done.send(Err(e.clone()));
                        }
                    }
                    while group.len() > self.max_unsent {
                        group.pop_front();
                        self.dropped.inc();
                        taken(&self.unsent, 1);
                    }
                    self.backlog.oldest_is(group.front());
                    self.outcomes.send_replace(GroupOutcome::Refused(e));
                    // A flush (at shutdown) does not wait out an outage.
                    answer(&mut flushes);
                    if !open {
                        break;
                    }
                    let pause = Duration::from_millis(100)
                        .saturating_mul(2u32.saturating_pow(failures.min(6)))
                        .min(MAX_PAUSE);
                    tokio::time::sleep(pause).await;
                }
            }
        }
        if !group.is_empty() {
            tracing::error!(
                records = group.len(),
                "stopping with responses' owners the control plane never took"
            );
        }
        answer(&mut flushes);
    }

    /// One request for the group's first `n` records, retried briefly.
    async fn record_all(&self, group: &VecDeque<Queued>, n: usize) -> Result<(), RegistryError> {
        let body =
            Bytes::from(batch_body(group, n).map_err(|e| RegistryError::Invalid(e.to_string()))?);
        let url = format!("{}/batch", self.base);
        let mut last = String::new();
        for attempt in 0..RECORD_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            let request = self
                .http
                .post(&url)
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
            let sent = authorized(request, &self.credential).send().await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                // A control plane older than this proxy: one record at a time.
                Ok(r) if matches!(r.status().as_u16(), 404 | 405) => {
                    return self
                        .record_each(group.iter().take(n).map(|q| &q.record))
                        .await;
                }
                Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
                Err(e) => last = e.without_url().to_string(),
            }
        }
        Err(RegistryError::Unavailable(last))
    }

    async fn record_each(
        &self,
        records: impl Iterator<Item = &ResponseRecord>,
    ) -> Result<(), RegistryError> {
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

/// A `ResponseBatch` of the group's first `n` records, written from the queue
/// rather than copied out of it.
fn batch_body(group: &VecDeque<Queued>, n: usize) -> serde_json::Result<Vec<u8>> {
    struct Records<'a>(&'a VecDeque<Queued>, usize);
    impl Serialize for Records<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().take(self.1).map(|q| &q.record))
        }
    }
    #[derive(Serialize)]
    struct Batch<'a> {
        records: Records<'a>,
    }
    serde_json::to_vec(&Batch {
        records: Records(group, n),
    })
}

/// Counts `n` records off the queue (sent or given up).
fn taken(unsent: &Gauge, n: usize) {
    unsent.dec_by(i64::try_from(n).unwrap_or(i64::MAX));
}

/// Queues `message`; true when someone waits for its outcome.
fn take(
    message: Message,
    group: &mut VecDeque<Queued>,
    flushes: &mut Vec<oneshot::Sender<()>>,
) -> bool {
    match message {
        Message::Record {
            record,
            done,
            queued_at,
        } => {
            let waited = done.is_some();
            group.push_back(Queued {
                record,
                done,
                queued_at,
            });
            waited
        }
        Message::Flush(done) => {
            flushes.push(done);
            true
        }
    }
}

/// Queues what waits in `queue`, up to a full group; true when someone waits for it.
/// Clears `open` once every sender has gone.
fn drain(
    queue: &mut mpsc::UnboundedReceiver<Message>,
    group: &mut VecDeque<Queued>,
    flushes: &mut Vec<oneshot::Sender<()>>,
    open: &mut bool,
) -> bool {
    let mut urgent = false;
    while group.len() < MAX_RESPONSE_BATCH {
        match queue.try_recv() {
            Ok(m) => urgent |= take(m, group, flushes),
            Err(mpsc::error::TryRecvError::Disconnected) => {
                *open = false;
                break;
            }
            Err(mpsc::error::TryRecvError::Empty) => break,
        }
    }
    urgent
}

fn answer(flushes: &mut Vec<oneshot::Sender<()>>) {
    for done in flushes.drain(..) {
        let _ = done.send(());
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Json;
    use axum::extract::State;
    use axum::http::StatusCode;
    use strata_contract::ResponseBatch;

    use super::*;

    /// A control plane whose batch route refuses the first `refuse` requests, then
    /// keeps what it is sent, one entry per request; with a gate, each group waits
    /// for a permit before it is taken.
    #[derive(Clone, Default)]
    pub(in crate::registry) struct ControlPlane {
        refuse: Arc<Mutex<usize>>,
        gate: Option<Arc<tokio::sync::Semaphore>>,
        /// Groups that reached it, taken or not yet.
        pub arrived: Arc<Mutex<Vec<Vec<String>>>>,
        /// Groups it took.
        pub batches: Arc<Mutex<Vec<Vec<String>>>>,
    }

    async fn batch(State(cp): State<ControlPlane>, Json(b): Json<ResponseBatch>) -> StatusCode {
        {
            let mut refuse = cp.refuse.lock().unwrap();
            if *refuse > 0 {
                *refuse -= 1;
                return StatusCode::SERVICE_UNAVAILABLE;
            }
        }
        let ids: Vec<String> = b.records.into_iter().map(|r| r.id).collect();
        cp.arrived.lock().unwrap().push(ids.clone());
        if let Some(gate) = &cp.gate {
            gate.acquire().await.unwrap().forget();
        }
        cp.batches.lock().unwrap().push(ids);
        StatusCode::NO_CONTENT
    }

    impl ControlPlane {
        /// Serves it; answers its URL.
        pub async fn start(
            refuse: usize,
            gate: Option<Arc<tokio::sync::Semaphore>>,
        ) -> (Self, String) {
            let cp = Self {
                refuse: Arc::new(Mutex::new(refuse)),
                gate,
                ..Self::default()
            };
            let app = axum::Router::new()
                .route(
                    "/internal/v1/proxy/responses/batch",
                    axum::routing::post(batch),
                )
                .with_state(cp.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await });
            (cp, url)
        }

        /// Waits until `n` groups have reached it.
        pub async fn arrivals(&self, n: usize) -> Vec<Vec<String>> {
            let started = std::time::Instant::now();
            loop {
                let arrived = self.arrived.lock().unwrap().clone();
                if arrived.len() >= n {
                    return arrived;
                }
                assert!(started.elapsed() < Duration::from_secs(3), "{arrived:?}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    async fn start(refuse: usize, max_unsent: usize) -> (ControlPlane, GroupQueue, Counter) {
        start_gathering(refuse, max_unsent, GATHER).await
    }

    async fn start_gathering(
        refuse: usize,
        max_unsent: usize,
        gather: Duration,
    ) -> (ControlPlane, GroupQueue, Counter) {
        let (cp, url) = ControlPlane::start(refuse, None).await;
        let dropped = Counter::default();
        let sender = GroupSender {
            http: reqwest::Client::new(),
            base: format!("{url}/internal/v1/proxy/responses"),
            credential: Secret::new("proxy-credential"),
            max_unsent,
            dropped: dropped.clone(),
            unsent: Gauge::default(),
            backlog: Arc::new(Backlog::new()),
            outcomes: watch::Sender::new(GroupOutcome::Taken),
            gather,
        };
        (cp, sender.spawn(), dropped)
    }

    fn record(id: &str) -> ResponseRecord {
        ResponseRecord {
            id: id.into(),
            ..crate::registry::tests::new_record()
        }
    }

    async fn flush(queue: &GroupQueue) {
        let (done, flushed) = oneshot::channel();
        queue.send(Message::Flush(done)).unwrap();
        flushed.await.unwrap();
    }

    #[test]
    fn a_batch_body_holds_the_first_records_as_queued() {
        let records: Vec<ResponseRecord> = ["resp_a", "resp_b", "resp_c"]
            .into_iter()
            .map(|id| ResponseRecord {
                claimed_by: Some("replica-1".into()),
                ..record(id)
            })
            .collect();
        let group = records
            .iter()
            .map(|r| Queued {
                record: r.clone(),
                done: None,
                queued_at: Instant::now(),
            })
            .collect();
        let sent: ResponseBatch = serde_json::from_slice(&batch_body(&group, 2).unwrap()).unwrap();
        assert_eq!(sent.records, records[..2]);
    }

    #[tokio::test]
    async fn records_nobody_waits_for_share_one_request() {
        let (cp, queue, _) = start(0, MAX_UNSENT).await;
        for i in 0..50 {
            let record = record(&format!("resp_{i}"));
            queue.send(Message::record(record, None)).unwrap();
        }
        flush(&queue).await;
        let batches = cp.batches.lock().unwrap().clone();
        assert_eq!(batches.len(), 1, "{batches:?}");
        assert_eq!(batches[0].len(), 50);
    }

    #[tokio::test]
    async fn a_record_or_flush_someone_waits_for_goes_without_waiting_out_the_gathering() {
        let (cp, queue, _) = start_gathering(0, MAX_UNSENT, Duration::from_secs(60)).await;
        let soon = Duration::from_secs(3);
        queue
            .send(Message::record(record("resp_quiet"), None))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(cp.arrived.lock().unwrap().is_empty(), "gathering");
        // A background response's record: it goes at once, with the one before it.
        let (done, outcome) = oneshot::channel();
        queue
            .send(Message::record(record("resp_waited"), Some(done)))
            .unwrap();
        let told = tokio::time::timeout(soon, outcome).await;
        assert!(matches!(told, Ok(Ok(Ok(())))), "{told:?}");
        queue
            .send(Message::record(record("resp_last"), None))
            .unwrap();
        tokio::time::timeout(soon, flush(&queue)).await.unwrap();
        assert_eq!(
            *cp.batches.lock().unwrap(),
            [vec!["resp_quiet", "resp_waited"], vec!["resp_last"]]
        );
    }

    #[tokio::test]
    async fn a_group_the_control_plane_refuses_is_kept_and_lands_later() {
        // Three refusals: the first group's every attempt.
        let (cp, queue, dropped) = start(RECORD_ATTEMPTS as usize, MAX_UNSENT).await;
        let (done, outcome) = oneshot::channel();
        let record = record("resp_waited");
        queue.send(Message::record(record, Some(done))).unwrap();
        let told = outcome.await.unwrap();
        assert!(
            matches!(told, Err(RegistryError::Unavailable(ref e)) if e == "HTTP 503"),
            "{told:?}"
        );
        queue
            .send(Message::record(self::record("resp_later"), None))
            .unwrap();
        let started = std::time::Instant::now();
        loop {
            let landed: Vec<String> = cp.batches.lock().unwrap().concat();
            if landed.len() == 2 {
                assert_eq!(landed, ["resp_waited", "resp_later"]);
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "never landed: {landed:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(dropped.get(), 0);
    }

    #[tokio::test]
    async fn past_the_limit_of_unsent_records_the_oldest_are_given_up_and_counted() {
        let (cp, queue, dropped) = start(usize::MAX, 5).await;
        for i in 0..8 {
            let record = record(&format!("resp_{i}"));
            queue.send(Message::record(record, None)).unwrap();
        }
        // Answered once the group's attempts failed.
        flush(&queue).await;
        assert_eq!(dropped.get(), 3);
        assert!(cp.batches.lock().unwrap().is_empty());
    }
}
