//! Response owners in the Redis the replicas share (when one is configured): a create
//! writes its owner there before the id leaves the proxy, so every replica can check
//! the id at once while the control plane's copy follows in a group.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use strata_contract::ResponseRecord;
use uuid::Uuid;

use super::Owner;

/// Long enough for the control plane's copy, the lasting one, to land (through an
/// outage of its own too), short enough that Redis holds only the last hour's ids.
const OWNER_TTL: Duration = Duration::from_secs(3600);

pub struct SharedOwners {
    connection: ConnectionManager,
    prefix: String,
}

impl SharedOwners {
    pub fn new(connection: ConnectionManager, prefix: &str) -> Self {
        Self {
            connection,
            prefix: format!("{prefix}:response:"),
        }
    }

    /// Writes the owner unless the id has one already (ids never change hands).
    pub async fn insert(&self, record: &ResponseRecord) -> Result<(), redis::RedisError> {
        let value = format!("{} {}", record.project_id, record.model);
        redis::cmd("SET")
            .arg(format!("{}{}", self.prefix, record.id))
            .arg(value)
            .arg("NX")
            .arg("EX")
            .arg(OWNER_TTL.as_secs())
            .query_async::<Option<String>>(&mut self.connection.clone())
            .await
            .map(drop)
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
