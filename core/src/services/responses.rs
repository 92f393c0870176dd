//! Responses API ids for the proxies: which project owns each (so one project can
//! never read, continue or cancel another's), and background responses metered once
//! when they finish, whichever replica follows them.

use std::time::Duration;

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Services;
use crate::domain::{
    MAX_RESPONSE_BATCH, MAX_RESPONSE_CLAIM, ResponseClaim, ResponseCompletion, ResponseRecord,
    UsageBatch, UsageRecord, validate_response_id,
};
use crate::store::copy::BinaryRows;
use crate::store::entities::responses::{self, key_of};
use crate::store::is_unique_violation;
use crate::{CoreError, FieldError};

/// How long the replica that created a background response holds it before it must
/// renew its claim.
const CREATION_CLAIM_SECS: i64 = 60;

/// The columns in the order `copy_responses` writes them.
const COPY_RESPONSES: &str = "COPY responses (key, id, project_id, key_id, model, background, \
    created_at, status, metered_at, claimed_by, claimed_until) FROM STDIN WITH (FORMAT binary)";

fn to_record(row: responses::Model) -> ResponseRecord {
    ResponseRecord {
        id: row.id,
        project_id: row.project_id,
        key_id: row.key_id,
        model: row.model,
        background: row.background,
        status: row.status,
        metered: row.metered_at.is_some(),
        claimed_by: row.claimed_by,
    }
}

/// The usage batch id of a response's completion: the same for every report of it,
/// so a retried or repeated report counts once.
fn completion_batch(id: &str) -> Uuid {
    let digest = Sha256::digest(format!("strata-response-usage:{id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

impl Services {
    /// Records a response the proxy created; repeating it changes nothing.
    pub async fn record_response(&self, record: &ResponseRecord) -> Result<(), CoreError> {
        self.record_responses(std::slice::from_ref(record)).await
    }

    /// Records responses the proxies created, in one transaction (a proxy sends those
    /// created while its previous batch was on its way together); repeating one
    /// changes nothing. Nothing is recorded if any record is invalid.
    pub async fn record_responses(&self, records: &[ResponseRecord]) -> Result<(), CoreError> {
        if records.len() > MAX_RESPONSE_BATCH {
            return Err(CoreError::invalid(
                "records",
                format!("at most {MAX_RESPONSE_BATCH} records a batch"),
            ));
        }
        let mut errors = Vec::new();
        for (i, record) in records.iter().enumerate() {
            if let Err(problems) = record.validate() {
                errors.extend(problems.into_iter().map(|FieldError { field, message }| {
                    FieldError::new(format!("records[{i}].{field}"), message)
                }));
            }
        }
        if !errors.is_empty() {
            return Err(CoreError::Validation(errors));
        }
        if records.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let claimed_until = now + chrono::Duration::seconds(CREATION_CLAIM_SECS);
        if self.store.db().get_database_backend() == DbBackend::Postgres {
            match self.copy_responses(records, now, claimed_until).await {
                Ok(()) => return Ok(()),
                // An id recorded before (a group sent again after its answer was lost):
                // the insert below skips it.
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let tx = self.store.begin_write().await?;
        let rows = records.iter().map(|record| responses::ActiveModel {
            key: Set(key_of(&record.id)),
            id: Set(record.id.clone()),
            project_id: Set(record.project_id),
            key_id: Set(record.key_id),
            model: Set(record.model.clone()),
            background: Set(record.background),
            created_at: Set(now),
            status: Set(record.status.clone()),
            metered_at: Set(record.metered.then_some(now)),
            claimed_by: Set(record.claimed_by.clone()),
            claimed_until: Set(record.claimed_by.as_ref().map(|_| claimed_until)),
        });
        responses::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(responses::Column::Key)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&*tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Postgres: the records in one binary `COPY`, all or none (it cannot skip an id
    /// recorded before: that fails the whole copy).
    async fn copy_responses(
        &self,
        records: &[ResponseRecord],
        now: chrono::DateTime<chrono::Utc>,
        claimed_until: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), DbErr> {
        let mut rows = BinaryRows::with_capacity(records.len() * 180);
        for record in records {
            rows.row(11);
            rows.uuid(key_of(&record.id));
            rows.text(&record.id);
            rows.uuid(record.project_id);
            rows.uuid(record.key_id);
            rows.text(&record.model);
            rows.bool(record.background);
            rows.timestamptz(now);
            rows.text(&record.status);
            rows.timestamptz_or_null(record.metered.then_some(now));
            rows.text_or_null(record.claimed_by.as_deref());
            rows.timestamptz_or_null(record.claimed_by.as_ref().map(|_| claimed_until));
        }
        self.store.copy_in(COPY_RESPONSES, rows.finish()).await?;
        Ok(())
    }

    /// The response with this id, if strata has seen it.
    pub async fn find_response(&self, id: &str) -> Result<Option<ResponseRecord>, CoreError> {
        validate_response_id(id).map_err(|e| CoreError::invalid("id", e))?;
        Ok(responses::Entity::find_by_id(key_of(id))
            .one(self.store.db())
            .await?
            // Two ids with one key would take 2^64 ids to meet; even so, never the
            // other's record.
            .filter(|row| row.id == id)
            .map(to_record))
    }

    /// Hands `claim.owner` up to `claim.limit` unmetered background responses that no
    /// other replica holds, for `claim.lease_secs`; renews the ones it holds already.
    pub async fn claim_responses(
        &self,
        claim: &ResponseClaim,
    ) -> Result<Vec<ResponseRecord>, CoreError> {
        if claim.owner.is_empty() || claim.owner.len() > 128 {
            return Err(CoreError::invalid("owner", "must be 1 to 128 characters"));
        }
        if !(1..=MAX_RESPONSE_CLAIM).contains(&claim.limit) {
            return Err(CoreError::invalid(
                "limit",
                format!("must be 1 to {MAX_RESPONSE_CLAIM}"),
            ));
        }
        if !(1..=3600).contains(&claim.lease_secs) {
            return Err(CoreError::invalid("lease_secs", "must be 1 to 3600"));
        }
        let now = self.clock.now();
        let until = now
            + chrono::Duration::from_std(Duration::from_secs(claim.lease_secs))
                .unwrap_or_else(|_| chrono::Duration::seconds(60));
        let free = || {
            sea_orm::Condition::any()
                .add(responses::Column::ClaimedUntil.is_null())
                .add(responses::Column::ClaimedUntil.lt(now))
                .add(responses::Column::ClaimedBy.eq(claim.owner.as_str()))
        };
        let candidates: Vec<Uuid> = responses::Entity::find()
            .select_only()
            .column(responses::Column::Key)
            .filter(responses::Column::MeteredAt.is_null())
            .filter(free())
            .order_by_asc(responses::Column::CreatedAt)
            .limit(claim.limit)
            .into_tuple()
            .all(self.store.db())
            .await?;
        let mut claimed = Vec::new();
        for key in candidates {
            // Conditional on still being free: of two replicas racing, one wins.
            let tx = self.store.begin_write().await?;
            let won = responses::Entity::update_many()
                .col_expr(
                    responses::Column::ClaimedBy,
                    Expr::value(claim.owner.clone()),
                )
                .col_expr(responses::Column::ClaimedUntil, Expr::value(until))
                .filter(responses::Column::Key.eq(key))
                .filter(responses::Column::MeteredAt.is_null())
                .filter(free())
                .exec(&*tx)
                .await?
                .rows_affected
                == 1;
            let row = if won {
                responses::Entity::find_by_id(key).one(&*tx).await?
            } else {
                None
            };
            tx.commit().await?;
            claimed.extend(row.map(to_record));
        }
        Ok(claimed)
    }

    /// Meters a finished background response once: its usage is recorded under a
    /// batch id derived from the response id, then the response is marked metered.
    /// Returns false when it was metered before (nothing changes).
    pub async fn complete_response(
        &self,
        id: &str,
        completion: &ResponseCompletion,
    ) -> Result<bool, CoreError> {
        if completion.status.is_empty() || completion.status.len() > 32 {
            return Err(CoreError::Validation(vec![FieldError::new(
                "status",
                "must be 1 to 32 characters",
            )]));
        }
        let Some(record) = self.find_response(id).await? else {
            return Err(CoreError::NotFound {
                kind: "response",
                id: id.to_owned(),
            });
        };
        if record.metered {
            return Ok(false);
        }
        let now = self.clock.now();
        let usage = UsageRecord {
            project_id: record.project_id,
            key_id: record.key_id,
            model: record.model.clone(),
            minute: now,
            requests: 1,
            errors: u64::from(completion.status != "completed"),
            input_tokens: completion.input_tokens,
            output_tokens: completion.output_tokens,
            cached_tokens: Ord::min(completion.cached_tokens, completion.input_tokens),
            // The Responses API reports no cache writes.
            cache_write_tokens: 0,
            latency_ms_sum: completion.latency_ms,
            service_tier: completion.service_tier,
        };
        self.record_usage(&UsageBatch {
            batch_id: completion_batch(id),
            records: vec![usage],
        })
        .await?;
        let tx = self.store.begin_write().await?;
        let first = responses::Entity::update_many()
            .col_expr(responses::Column::MeteredAt, Expr::value(Some(now)))
            .col_expr(
                responses::Column::Status,
                Expr::value(completion.status.clone()),
            )
            .filter(responses::Column::Key.eq(key_of(id)))
            .filter(responses::Column::MeteredAt.is_null())
            .exec(&*tx)
            .await?
            .rows_affected
            == 1;
        tx.commit().await?;
        Ok(first)
    }

    /// Forgets response ids older than `max_age` (Mantle keeps responses about 30
    /// days; a metered or abandoned id older than that has nothing left to guard).
    pub async fn purge_responses(&self, max_age: chrono::Duration) -> Result<u64, CoreError> {
        let cutoff = self.clock.now() - max_age;
        let done = responses::Entity::delete_many()
            .filter(responses::Column::CreatedAt.lt(cutoff))
            .exec(self.store.db())
            .await?;
        Ok(done.rows_affected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_responses_usage_batch_id_is_fixed_by_its_id() {
        assert_eq!(completion_batch("resp_1"), completion_batch("resp_1"));
        assert_ne!(completion_batch("resp_1"), completion_batch("resp_2"));
    }
}
