//! Response owners in the Redis the replicas share (when one is configured): the
//! owners of new responses are written there off the request path, one command for
//! all those created during the last few milliseconds, so other replicas know an id
//! within those milliseconds, sooner than the control plane's copy, and while the
//! control plane is away.
//!
//! Owners are fields of one hash per ten minutes (`{prefix}:responses:{bucket}`), not
//! a key each: a group costs Redis one command and one expiry instead of one per id.
//! A bucket is unlinked (freed off Redis's main thread) by the first replica to write
//! once no lookup reads it; its expiry, a little later, only matters when no replica
//! writes.

use std::ops::RangeInclusive;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use strata_contract::{MAX_RESPONSE_BATCH, ResponseRecord};
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use super::Owner;

/// Long enough for the control plane's copy, the lasting one, to land (through an
/// outage of its own too), short enough that Redis holds only the last hour's ids.
const OWNER_TTL: Duration = Duration::from_secs(3600);
/// The span of one bucket's hash.
const BUCKET_SECS: u64 = 600;
/// Buckets a lookup reads besides the current one: every bucket an id created
/// within `OWNER_TTL` can be in.
const BUCKETS_BACK: u64 = OWNER_TTL.as_secs() / BUCKET_SECS;
/// The least time between two calls while owners keep coming: a call carries the
/// owners of that time rather than the few queued during the last call's round trip.
/// Other replicas learn an id this much later at most, well before they look again
/// for one they do not know (`RECHECK_UNKNOWN`).
const CALL_EVERY: Duration = Duration::from_millis(5);
/// How long after no lookup reads a bucket its expiry frees it, should no replica
/// have unlinked it by then.
const EXPIRY_SLACK_SECS: u64 = 300;

/// Sets each owner unless its id has one already (ids never change hands): a
/// bucket's fields, and the bucket's expiry. KEYS[1] is the bucket, ARGV[1] its
/// expiry (Unix seconds), then id and owner pairs.
const SET_OWNERS: &str = r"
for i = 2, #ARGV, 2 do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIREAT', KEYS[1], ARGV[1])
return 0
";

pub struct SharedOwners {
    connection: ConnectionManager,
    prefix: String,
    /// To the task that writes owners (started with the first one).
    writer: OnceLock<mpsc::UnboundedSender<(String, String)>>,
}

impl SharedOwners {
    pub fn new(connection: ConnectionManager, prefix: &str) -> Self {
        Self {
            connection,
            prefix: format!("{prefix}:responses:"),
            writer: OnceLock::new(),
        }
    }

    /// Queues the owner for Redis.
    pub fn insert(&self, record: &ResponseRecord) {
        let writer = self.writer.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(write_owners(
                self.connection.clone(),
                self.prefix.clone(),
                receiver,
            ));
            sender
        });
        let owner = format!("{} {}", record.project_id, record.model);
        // Only fails once the runtime is stopping; the control plane's copy follows.
        let _ = writer.send((record.id.clone(), owner));
    }

    /// The owner of `id`, if Redis has it; a value that does not parse counts as none.
    pub async fn get(&self, id: &str) -> Result<Option<Owner>, redis::RedisError> {
        let mut pipe = redis::pipe();
        for bucket in buckets_read(unix_now()).rev() {
            pipe.cmd("HGET")
                .arg(bucket_key(&self.prefix, bucket))
                .arg(id);
        }
        let values: Vec<Option<String>> = pipe.query_async(&mut self.connection.clone()).await?;
        Ok(values.into_iter().flatten().next().and_then(|v| {
            let (project, model) = v.split_once(' ')?;
            Some(Owner {
                project: Uuid::parse_str(project).ok()?,
                model: Arc::from(model),
            })
        }))
    }
}

/// The hash of bucket `bucket`'s owners; `prefix` ends in `:responses:`.
fn bucket_key(prefix: &str, bucket: u64) -> String {
    format!("{prefix}{bucket}")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn bucket_of(unix_secs: u64) -> u64 {
    unix_secs / BUCKET_SECS
}

/// The buckets a lookup at `now` reads: every one an id created within `OWNER_TTL`
/// can be in, and the next (a replica whose clock runs ahead may write there).
fn buckets_read(now: u64) -> RangeInclusive<u64> {
    let current = bucket_of(now);
    current.saturating_sub(BUCKETS_BACK)..=current + 1
}

/// The bucket no lookup reads once the writers are in bucket `current`.
fn bucket_unread_in(current: u64) -> Option<u64> {
    current.checked_sub(BUCKETS_BACK + 1)
}

/// When bucket `bucket`'s hash may go: once its last id is `OWNER_TTL` old, and a
/// while after the writers unlink it.
fn expiry_of(bucket: u64) -> u64 {
    (bucket + 1) * BUCKET_SECS + OWNER_TTL.as_secs() + EXPIRY_SLACK_SECS
}

/// Writes queued owners, one script call at a time, at most one per `CALL_EVERY`. A
/// call Redis fails is not retried: the control plane's copy is the lasting one.
async fn write_owners(
    mut connection: ConnectionManager,
    prefix: String,
    mut queue: mpsc::UnboundedReceiver<(String, String)>,
) {
    let script = redis::Script::new(SET_OWNERS);
    let mut owners = Vec::with_capacity(MAX_RESPONSE_BATCH);
    let mut current = None;
    let mut last_call: Option<Instant> = None;
    while queue.recv_many(&mut owners, MAX_RESPONSE_BATCH).await > 0 {
        // The queue is read once the time is up, so an arrival meanwhile wakes no one.
        if let Some(last) = last_call {
            tokio::time::sleep_until(last + CALL_EVERY).await;
            while owners.len() < MAX_RESPONSE_BATCH {
                match queue.try_recv() {
                    Ok(owner) => owners.push(owner),
                    Err(_) => break,
                }
            }
        }
        last_call = Some(Instant::now());
        let bucket = bucket_of(unix_now());
        let mut call = script.key(bucket_key(&prefix, bucket));
        call.arg(expiry_of(bucket));
        for (id, owner) in owners.drain(..) {
            call.arg(id).arg(owner);
        }
        if let Err(e) = call.invoke_async::<()>(&mut connection).await {
            tracing::warn!(error.cause = %e, "cannot write responses' owners to Redis");
        }
        if current != Some(bucket) {
            current = Some(bucket);
            // The bucket no lookup reads any more, freed off Redis's main thread
            // (an expiring hash is freed on it).
            if let Some(gone) = bucket_unread_in(bucket) {
                let unlinked: Result<(), _> = redis::cmd("UNLINK")
                    .arg(bucket_key(&prefix, gone))
                    .query_async(&mut connection)
                    .await;
                if let Err(e) = unlinked {
                    tracing::warn!(error.cause = %e, "cannot unlink an old bucket of responses' owners");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_is_read_for_its_whole_ttl_and_its_bucket_unlinked_before_it_expires() {
        let ttl = OWNER_TTL.as_secs();
        // Creations across a few buckets, at their edges and within.
        for created in (10 * BUCKET_SECS - 2..=13 * BUCKET_SECS + 2).step_by(7) {
            let bucket = bucket_of(created);
            for later in [0, 1, BUCKET_SECS - 1, BUCKET_SECS, ttl / 2, ttl - 1] {
                let now = created + later;
                assert!(
                    buckets_read(now).contains(&bucket),
                    "created at {created}, not read {later} s later"
                );
                assert!(
                    bucket_unread_in(bucket_of(now)).is_none_or(|gone| gone < bucket),
                    "created at {created}, unlinked {later} s later"
                );
                assert!(expiry_of(bucket) > now);
            }
            // Unlinked by the writers once no lookup reads it, before it expires.
            let unread = (bucket + 1) * BUCKET_SECS + ttl;
            assert!(!buckets_read(unread).contains(&bucket));
            assert_eq!(bucket_unread_in(bucket_of(unread)), Some(bucket));
            assert!(expiry_of(bucket) > unread);
        }
    }
}
