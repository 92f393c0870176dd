//! Response owners in the Redis the replicas share (when one is configured): the
//! owners of new responses are written there off the request path, one pipeline for
//! all those created while the previous one was on its way, so other replicas know an
//! id within a Redis round trip, sooner than the control plane's copy, and while the
//! control plane is away.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use strata_contract::{MAX_RESPONSE_BATCH, ResponseRecord};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::Owner;

/// Long enough for the control plane's copy, the lasting one, to land (through an
/// outage of its own too), short enough that Redis holds only the last hour's ids.
const OWNER_TTL: Duration = Duration::from_secs(3600);

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
            prefix: format!("{prefix}:response:"),
            writer: OnceLock::new(),
        }
    }

    /// Queues the owner for Redis, where it is set unless the id has one already (ids
    /// never change hands).
    pub fn insert(&self, record: &ResponseRecord) {
        let writer = self.writer.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(write_owners(self.connection.clone(), receiver));
            sender
        });
        let key = format!("{}{}", self.prefix, record.id);
        let value = format!("{} {}", record.project_id, record.model);
        // Only fails once the runtime is stopping; the control plane's copy follows.
        let _ = writer.send((key, value));
    }

    /// The owner of `id`, if Redis has it; a value that does not parse counts as none.
    pub async fn get(&self, id: &str) -> Result<Option<Owner>, redis::RedisError> {
        let value: Option<String> = redis::cmd("GET")
            .arg(format!("{}{id}", self.prefix))
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(value.and_then(|v| {
            let (project, model) = v.split_once(' ')?;
            Some(Owner {
                project: Uuid::parse_str(project).ok()?,
                model: Arc::from(model),
            })
        }))
    }
}

/// Writes queued owners, one pipeline at a time. A pipeline Redis fails is not
/// retried: the control plane's copy is the lasting one.
async fn write_owners(
    mut connection: ConnectionManager,
    mut queue: mpsc::UnboundedReceiver<(String, String)>,
) {
    let mut owners = Vec::with_capacity(MAX_RESPONSE_BATCH);
    while queue.recv_many(&mut owners, MAX_RESPONSE_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for (key, value) in owners.drain(..) {
            pipe.cmd("SET")
                .arg(key)
                .arg(value)
                .arg("NX")
                .arg("EX")
                .arg(OWNER_TTL.as_secs())
                .ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut connection).await {
            tracing::warn!(error.cause = %e, "cannot write responses' owners to Redis");
        }
    }
}
