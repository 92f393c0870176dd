//! Usage from the proxy: batches applied once, summed per minute, priced from the
//! catalog; and the per-project report the API serves.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use super::Services;
use crate::domain::{
    MAX_USAGE_RECORDS, ModelId, ServiceTier, UsageBatch, UsageGroupBy, UsageReport, UsageRow,
};
use crate::store::entities::{api_keys, models, usage_batches, usage_daily, usage_minutes};
use crate::{CoreError, FieldError};

/// Rows per upsert statement.
const UPSERT_CHUNK: usize = 500;

/// Longest range a report covers.
const MAX_REPORT_DAYS: i64 = 366;

type MinuteKey = (Uuid, DateTime<Utc>, Uuid, String, ServiceTier);

fn truncate_to_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(t)
}

fn to_i64(field: String, v: u64, errors: &mut Vec<FieldError>) -> i64 {
    i64::try_from(v).unwrap_or_else(|_| {
        errors.push(FieldError::new(field, "is too large"));
        0
    })
}

/// Micro-dollars for `tokens` at `price` micro-dollars per million tokens.
fn cost_micros(tokens: i64, price_micros_per_mtok: i64) -> i64 {
    let micros = i128::from(tokens) * i128::from(price_micros_per_mtok) / 1_000_000;
    i64::try_from(micros).unwrap_or(i64::MAX)
}

/// A model's prices in micro-dollars per million tokens; cached input and cache
/// writes without a price of their own cost what input does.
#[derive(Debug, Clone, Default)]
struct TokenPrices {
    input: i64,
    cached_input: i64,
    cache_write: i64,
    output: i64,
    tier_factors: BTreeMap<ServiceTier, f64>,
}

impl TokenPrices {
    fn of(m: &models::Model) -> Result<Self, CoreError> {
        let input = m.input_price_micros_per_mtok;
        Ok(Self {
            input,
            cached_input: m.cached_input_price_micros_per_mtok.unwrap_or(input),
            cache_write: m.cache_write_price_micros_per_mtok.unwrap_or(input),
            output: m.output_price_micros_per_mtok,
            tier_factors: serde_json::from_value(m.service_tier_price_factors.clone())
                .map_err(|e| super::corrupt("model service tier price factors", e))?,
        })
    }

    /// The prices in `tier` (its factor, if the catalog gives one, times each).
    fn in_tier(&self, tier: ServiceTier) -> Self {
        let factor = self.tier_factors.get(&tier).copied().unwrap_or(1.0);
        let scale = |micros: i64| (micros as f64 * factor).round() as i64;
        Self {
            input: scale(self.input),
            cached_input: scale(self.cached_input),
            cache_write: scale(self.cache_write),
            output: scale(self.output),
            tier_factors: BTreeMap::new(),
        }
    }
}

impl Services {
    /// Applies a batch of usage aggregates; returns false when this batch was
    /// already applied (a retry), in which case nothing changes.
    pub async fn record_usage(&self, batch: &UsageBatch) -> Result<bool, CoreError> {
        if batch.records.len() > MAX_USAGE_RECORDS {
            return Err(CoreError::invalid(
                "records",
                format!("at most {MAX_USAGE_RECORDS} per batch"),
            ));
        }
        let mut errors = Vec::new();
        let mut merged: BTreeMap<MinuteKey, usage_minutes::Model> = BTreeMap::new();
        for (i, r) in batch.records.iter().enumerate() {
            let at = |f: &str| format!("records[{i}].{f}");
            if let Err(e) = ModelId::check(&r.model) {
                errors.push(FieldError::new(at("model"), e));
            }
            if r.errors > r.requests {
                errors.push(FieldError::new(at("errors"), "cannot exceed requests"));
            }
            if r.cached_tokens.saturating_add(r.cache_write_tokens) > r.input_tokens {
                errors.push(FieldError::new(
                    at("cached_tokens"),
                    "cached_tokens and cache_write_tokens together cannot exceed input_tokens",
                ));
            }
            let minute = truncate_to_minute(r.minute);
            let row = usage_minutes::Model {
                project_id: r.project_id,
                minute,
                key_id: r.key_id,
                model: r.model.clone(),
                service_tier: r.service_tier.as_str().to_owned(),
                requests: to_i64(at("requests"), r.requests, &mut errors),
                errors: to_i64(at("errors"), r.errors, &mut errors),
                input_tokens: to_i64(at("input_tokens"), r.input_tokens, &mut errors),
                output_tokens: to_i64(at("output_tokens"), r.output_tokens, &mut errors),
                cached_tokens: to_i64(at("cached_tokens"), r.cached_tokens, &mut errors),
                cache_write_tokens: to_i64(
                    at("cache_write_tokens"),
                    r.cache_write_tokens,
                    &mut errors,
                ),
                cost_micros: 0,
                latency_ms_sum: to_i64(at("latency_ms_sum"), r.latency_ms_sum, &mut errors),
            };
            let key = (
                r.project_id,
                minute,
                r.key_id,
                r.model.clone(),
                r.service_tier,
            );
            merged
                .entry(key)
                .and_modify(|m| {
                    m.requests = m.requests.saturating_add(row.requests);
                    m.errors = m.errors.saturating_add(row.errors);
                    m.input_tokens = m.input_tokens.saturating_add(row.input_tokens);
                    m.output_tokens = m.output_tokens.saturating_add(row.output_tokens);
                    m.cached_tokens = m.cached_tokens.saturating_add(row.cached_tokens);
                    m.cache_write_tokens =
                        m.cache_write_tokens.saturating_add(row.cache_write_tokens);
                    m.latency_ms_sum = m.latency_ms_sum.saturating_add(row.latency_ms_sum);
                })
                .or_insert(row);
        }
        if !errors.is_empty() {
            return Err(CoreError::Validation(errors));
        }
        let now = self.clock.now();
        let tx = self.store.begin_write().await?;
        let first_time = usage_batches::Entity::insert(usage_batches::ActiveModel {
            id: Set(batch.batch_id),
            received_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(usage_batches::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&*tx)
        .await?
            == 1;
        if !first_time || merged.is_empty() {
            tx.commit().await?;
            return Ok(first_time);
        }
        let prices: BTreeMap<String, TokenPrices> = models::Entity::find()
            .all(&*tx)
            .await?
            .into_iter()
            .map(|m| Ok((m.id.clone(), TokenPrices::of(&m)?)))
            .collect::<Result<_, CoreError>>()?;
        let mut last_used: BTreeMap<Uuid, DateTime<Utc>> = BTreeMap::new();
        // The same usage per project and UTC day, for the cost pages.
        let mut daily: BTreeMap<(Uuid, NaiveDate), (i64, i64)> = BTreeMap::new();
        let rows = merged.into_iter().map(|((.., tier), mut m)| {
            let p = prices
                .get(&m.model)
                .map(|p| p.in_tier(tier))
                .unwrap_or_default();
            // Input tokens include the cached and cache-written ones (OpenAI's
            // `prompt_tokens`; the proxy adds Anthropic's three input counts up).
            let uncached = m
                .input_tokens
                .saturating_sub(m.cached_tokens)
                .saturating_sub(m.cache_write_tokens);
            m.cost_micros = cost_micros(uncached, p.input)
                .saturating_add(cost_micros(m.cached_tokens, p.cached_input))
                .saturating_add(cost_micros(m.cache_write_tokens, p.cache_write))
                .saturating_add(cost_micros(m.output_tokens, p.output));
            let seen = last_used.entry(m.key_id).or_insert(m.minute);
            *seen = Ord::max(*seen, m.minute);
            let day = daily
                .entry((m.project_id, m.minute.date_naive()))
                .or_default();
            day.0 = day.0.saturating_add(m.requests);
            day.1 = day.1.saturating_add(m.cost_micros);
            usage_minutes::ActiveModel::from(m)
        });
        let rows: Vec<_> = rows.collect();
        let add = |c: usage_minutes::Column| {
            Expr::col((usage_minutes::Entity, c)).add(Expr::col((Alias::new("excluded"), c)))
        };
        use usage_minutes::Column as C;
        let mut on_conflict =
            OnConflict::columns([C::ProjectId, C::Minute, C::KeyId, C::Model, C::ServiceTier]);
        for c in [
            C::Requests,
            C::Errors,
            C::InputTokens,
            C::OutputTokens,
            C::CachedTokens,
            C::CacheWriteTokens,
            C::CostMicros,
            C::LatencyMsSum,
        ] {
            on_conflict.value(c, add(c));
        }
        // Chunks keep each statement under the bind-parameter limits (SQLite 32,766,
        // Postgres 65,535; 13 per row).
        for chunk in rows.chunks(UPSERT_CHUNK) {
            usage_minutes::Entity::insert_many(chunk.to_vec())
                .on_conflict(on_conflict.clone())
                .exec_without_returning(&*tx)
                .await?;
        }
        let touched: std::collections::BTreeSet<(Uuid, NaiveDate)> = daily
            .keys()
            .map(|(project, day)| (*project, crate::domain::month_start(*day)))
            .collect();
        let days: Vec<usage_daily::ActiveModel> = daily
            .into_iter()
            .map(
                |((project_id, day), (requests, cost))| usage_daily::ActiveModel {
                    project_id: Set(project_id),
                    day: Set(day),
                    requests: Set(requests),
                    cost_micros: Set(cost),
                },
            )
            .collect();
        let add_daily = |c: usage_daily::Column| {
            Expr::col((usage_daily::Entity, c)).add(Expr::col((Alias::new("excluded"), c)))
        };
        let daily_conflict =
            OnConflict::columns([usage_daily::Column::ProjectId, usage_daily::Column::Day])
                .value(
                    usage_daily::Column::Requests,
                    add_daily(usage_daily::Column::Requests),
                )
                .value(
                    usage_daily::Column::CostMicros,
                    add_daily(usage_daily::Column::CostMicros),
                )
                .to_owned();
        for chunk in days.chunks(UPSERT_CHUNK) {
            usage_daily::Entity::insert_many(chunk.to_vec())
                .on_conflict(daily_conflict.clone())
                .exec_without_returning(&*tx)
                .await?;
        }
        for (key_id, minute) in last_used {
            api_keys::Entity::update_many()
                .col_expr(api_keys::Column::LastUsedAt, Expr::value(Some(minute)))
                .filter(api_keys::Column::Id.eq(key_id))
                .filter(
                    sea_orm::Condition::any()
                        .add(api_keys::Column::LastUsedAt.is_null())
                        .add(api_keys::Column::LastUsedAt.lt(minute)),
                )
                .exec(&*tx)
                .await?;
        }
        Self::record_budget_crossings(&*tx, &touched, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Forgets usage batch ids received longer ago than `max_age` (a retry of those
    /// would count twice, but the proxy retries within seconds).
    pub async fn purge_usage_batches(&self, max_age: Duration) -> Result<u64, CoreError> {
        let cutoff = self.clock.now() - max_age;
        Ok(usage_batches::Entity::delete_many()
            .filter(usage_batches::Column::ReceivedAt.lt(cutoff))
            .exec(self.store.db())
            .await?
            .rows_affected)
    }

    /// Deletes per-minute usage older than `max_age`; the per-day totals stay.
    pub async fn purge_usage_minutes(&self, max_age: Duration) -> Result<u64, CoreError> {
        let cutoff = self.clock.now() - max_age;
        Ok(usage_minutes::Entity::delete_many()
            .filter(usage_minutes::Column::Minute.lt(cutoff))
            .exec(self.store.db())
            .await?
            .rows_affected)
    }

    /// A project's usage in `[from, to)`, default: this month so far.
    pub async fn usage_report(
        &self,
        project_id: Uuid,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        group_by: UsageGroupBy,
    ) -> Result<UsageReport, CoreError> {
        let now = self.clock.now();
        let month_start = Utc
            .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
            .single()
            .unwrap_or(now);
        let from = from.unwrap_or(month_start);
        let to = to.unwrap_or(now);
        if to <= from {
            return Err(CoreError::invalid("to", "must be after from"));
        }
        if to - from > Duration::days(MAX_REPORT_DAYS) {
            return Err(CoreError::invalid(
                "from",
                format!("the range may cover at most {MAX_REPORT_DAYS} days"),
            ));
        }
        let rows = usage_minutes::Entity::find()
            .filter(usage_minutes::Column::ProjectId.eq(project_id))
            .filter(usage_minutes::Column::Minute.gte(from))
            .filter(usage_minutes::Column::Minute.lt(to))
            .all(self.store.db())
            .await?;
        let mut groups: BTreeMap<String, Totals> = BTreeMap::new();
        let mut total = Totals::default();
        for r in &rows {
            let group = match group_by {
                UsageGroupBy::Model => r.model.clone(),
                UsageGroupBy::Key => r.key_id.to_string(),
                UsageGroupBy::Day => r.minute.format("%Y-%m-%d").to_string(),
                UsageGroupBy::ServiceTier => r.service_tier.clone(),
            };
            groups.entry(group).or_default().add(r);
            total.add(r);
        }
        Ok(UsageReport {
            project_id,
            from,
            to,
            group_by,
            items: groups.into_iter().map(|(g, t)| t.row(g)).collect(),
            total: total.row("total".into()),
        })
    }
}

#[derive(Default)]
struct Totals {
    requests: i64,
    errors: i64,
    input_tokens: i64,
    output_tokens: i64,
    cached_tokens: i64,
    cache_write_tokens: i64,
    cost_micros: i64,
    latency_ms_sum: i64,
}

impl Totals {
    fn add(&mut self, r: &usage_minutes::Model) {
        self.requests = self.requests.saturating_add(r.requests);
        self.errors = self.errors.saturating_add(r.errors);
        self.input_tokens = self.input_tokens.saturating_add(r.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(r.output_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(r.cached_tokens);
        self.cache_write_tokens = self.cache_write_tokens.saturating_add(r.cache_write_tokens);
        self.cost_micros = self.cost_micros.saturating_add(r.cost_micros);
        self.latency_ms_sum = self.latency_ms_sum.saturating_add(r.latency_ms_sum);
    }

    fn row(&self, group: String) -> UsageRow {
        let count = |v: i64| u64::try_from(v).unwrap_or(0);
        UsageRow {
            group,
            requests: count(self.requests),
            errors: count(self.errors),
            input_tokens: count(self.input_tokens),
            output_tokens: count(self.output_tokens),
            cached_tokens: count(self.cached_tokens),
            cache_write_tokens: count(self.cache_write_tokens),
            cost_usd: self.cost_micros as f64 / 1e6,
            avg_latency_ms: (self.requests > 0)
                .then(|| self.latency_ms_sum as f64 / self.requests as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_tokens_times_price_per_million() {
        // 1,500 tokens at $0.15 per million = $0.000225 = 225 micro-dollars.
        assert_eq!(cost_micros(1_500, 150_000), 225);
        assert_eq!(cost_micros(0, 150_000), 0);
        assert_eq!(cost_micros(i64::MAX, i64::MAX), i64::MAX);
    }
}
