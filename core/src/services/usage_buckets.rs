//! Metered usage over time, cut into buckets and grouped: what the OpenAI-shaped
//! admin endpoints (`/v1/organization/usage/completions`, `/v1/organization/costs`)
//! serve.

use std::collections::BTreeMap;

use chrono::Duration;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::Services;
use crate::CoreError;
use crate::domain::{BucketQuery, UsageBucket, UsageDimension, UsageGroup, UsageTotals};
use crate::store::entities::usage_minutes;

/// Most buckets one query may cut (31 days of hours; a day of minutes).
const MAX_BUCKETS: i64 = 1_500;

impl Services {
    /// Every bucket of `[query.start, query.end)` (empty ones too), each with the
    /// groups that had usage in it.
    pub async fn usage_buckets(&self, query: &BucketQuery) -> Result<Vec<UsageBucket>, CoreError> {
        let width = query.width.seconds();
        let first = query.width.floor(query.start);
        if query.end <= query.start {
            return Err(CoreError::invalid("end_time", "must be after start_time"));
        }
        let count = (query.end - first).num_seconds().div_euclid(width)
            + i64::from((query.end - first).num_seconds().rem_euclid(width) > 0);
        if count > MAX_BUCKETS {
            return Err(CoreError::invalid(
                "end_time",
                format!("the range holds {count} buckets; at most {MAX_BUCKETS}"),
            ));
        }
        let mut select = usage_minutes::Entity::find()
            .filter(usage_minutes::Column::Minute.gte(query.start))
            .filter(usage_minutes::Column::Minute.lt(query.end));
        if !query.projects.is_empty() {
            select = select.filter(usage_minutes::Column::ProjectId.is_in(query.projects.clone()));
        }
        if !query.api_keys.is_empty() {
            select = select.filter(usage_minutes::Column::KeyId.is_in(query.api_keys.clone()));
        }
        if !query.models.is_empty() {
            select = select.filter(usage_minutes::Column::Model.is_in(query.models.clone()));
        }
        let mut buckets: Vec<BTreeMap<UsageGroup, UsageTotals>> =
            (0..count).map(|_| BTreeMap::new()).collect();
        for row in select.all(self.store.db()).await? {
            let index = (row.minute - first).num_seconds().div_euclid(width);
            let Some(bucket) = usize::try_from(index).ok().and_then(|i| buckets.get_mut(i)) else {
                continue;
            };
            let totals = bucket.entry(group_of(&row, &query.group_by)).or_default();
            totals.requests = totals.requests.saturating_add(row.requests);
            totals.input_tokens = totals.input_tokens.saturating_add(row.input_tokens);
            totals.output_tokens = totals.output_tokens.saturating_add(row.output_tokens);
            totals.cached_tokens = totals.cached_tokens.saturating_add(row.cached_tokens);
            totals.cache_write_tokens = totals
                .cache_write_tokens
                .saturating_add(row.cache_write_tokens);
            totals.cost_micros = totals.cost_micros.saturating_add(row.cost_micros);
        }
        Ok(buckets
            .into_iter()
            .enumerate()
            .map(|(i, groups)| {
                let start = first + Duration::seconds(width * i as i64);
                UsageBucket {
                    start,
                    end: start + Duration::seconds(width),
                    results: groups.into_iter().collect(),
                }
            })
            .collect())
    }
}

fn group_of(row: &usage_minutes::Model, by: &[UsageDimension]) -> UsageGroup {
    let mut group = UsageGroup::default();
    for dimension in by {
        match dimension {
            UsageDimension::Project => group.project_id = Some(row.project_id),
            UsageDimension::ApiKey => group.api_key_id = Some(row.key_id),
            UsageDimension::Model => group.model = Some(row.model.clone()),
            UsageDimension::ServiceTier => group.service_tier = Some(row.service_tier.clone()),
        }
    }
    group
}
