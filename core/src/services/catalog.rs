//! The model catalog: read by everyone, changed by platform admins as prices move.

use std::collections::HashMap;

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::audit::{Change, record, snapshot};
use super::{Services, corrupt};
use crate::CoreError;
use crate::auth::Actor;
use crate::domain::{CatalogModel, MantlePath, ModelId, ModelSpec, Price, Region, RetentionMode};
use crate::store::entities::models;

pub(crate) fn to_domain(row: models::Model) -> Result<CatalogModel, CoreError> {
    let regions: Vec<String> =
        serde_json::from_value(row.regions).map_err(|e| corrupt("model regions", e))?;
    let regions = regions
        .iter()
        .map(|r| Region::parse(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt("model region", e))?;
    let modes: Vec<String> = serde_json::from_value(row.retention_modes)
        .map_err(|e| corrupt("model retention modes", e))?;
    let retention_modes = modes
        .iter()
        .map(|m| RetentionMode::parse(m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt("model retention mode", e))?;
    Ok(CatalogModel {
        id: ModelId::parse(&row.id).map_err(|e| corrupt("model id", e))?,
        provider: row.provider,
        display_name: row.display_name,
        supports_chat: row.supports_chat,
        supports_responses: row.supports_responses,
        supports_messages: row.supports_messages,
        supports_streaming: row.supports_streaming,
        supports_multiple_choices: row.supports_multiple_choices,
        supports_logprobs: row.supports_logprobs,
        accepts_content_parts: row.accepts_content_parts,
        regions,
        mantle_path: MantlePath::parse(&row.mantle_path)
            .map_err(|e| corrupt("model mantle_path", e))?,
        retention_modes,
        input_price_per_mtok_usd: Price::from_micros(row.input_price_micros_per_mtok),
        output_price_per_mtok_usd: Price::from_micros(row.output_price_micros_per_mtok),
        cached_input_price_per_mtok_usd: Price::from_micros(
            row.cached_input_price_micros_per_mtok
                .unwrap_or(row.input_price_micros_per_mtok),
        ),
        cache_write_price_per_mtok_usd: Price::from_micros(
            row.cache_write_price_micros_per_mtok
                .unwrap_or(row.input_price_micros_per_mtok),
        ),
        service_tier_price_factors: serde_json::from_value(row.service_tier_price_factors)
            .map_err(|e| corrupt("model service tier price factors", e))?,
        updated_at: row.updated_at,
    })
}

impl Services {
    pub async fn list_models(&self) -> Result<Vec<CatalogModel>, CoreError> {
        models::Entity::find()
            .order_by_asc(models::Column::Id)
            .all(self.store.db())
            .await?
            .into_iter()
            .map(to_domain)
            .collect()
    }

    pub async fn get_model(&self, id: &str) -> Result<CatalogModel, CoreError> {
        let row = models::Entity::find_by_id(id).one(self.store.db()).await?;
        row.map(to_domain)
            .transpose()?
            .ok_or_else(|| CoreError::NotFound {
                kind: "model",
                id: id.into(),
            })
    }

    /// The catalog entries for the given ids, keyed by id (missing ids are absent).
    pub(crate) async fn models_by_id(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        ids: &[ModelId],
    ) -> Result<HashMap<ModelId, CatalogModel>, CoreError> {
        let ids: Vec<&str> = ids.iter().map(ModelId::as_str).collect();
        models::Entity::find()
            .filter(models::Column::Id.is_in(ids))
            .all(db)
            .await?
            .into_iter()
            .map(|row| to_domain(row).map(|m| (m.id.clone(), m)))
            .collect()
    }

    /// Creates or replaces a catalog entry. Returns the entry and whether it is new.
    pub async fn put_model(
        &self,
        actor: &Actor,
        id: &str,
        spec: ModelSpec,
    ) -> Result<(CatalogModel, bool), CoreError> {
        let model_id = ModelId::parse(id).map_err(|e| CoreError::invalid("id", e))?;
        let tx = self.store.begin_write().await?;
        let existing = models::Entity::find_by_id(model_id.as_str())
            .one(&*tx)
            .await?;
        let before = existing.clone().map(to_domain).transpose()?;
        let regions: Vec<&str> = spec.regions.iter().map(|r| r.as_str()).collect();
        let row = models::ActiveModel {
            id: Set(model_id.as_str().to_owned()),
            provider: Set(spec.provider),
            display_name: Set(spec.display_name),
            supports_chat: Set(spec.supports_chat),
            supports_responses: Set(spec.supports_responses),
            supports_messages: Set(spec.supports_messages),
            supports_streaming: Set(spec.supports_streaming),
            supports_multiple_choices: Set(spec.supports_multiple_choices),
            supports_logprobs: Set(spec.supports_logprobs),
            accepts_content_parts: Set(spec.accepts_content_parts),
            regions: Set(serde_json::json!(regions)),
            mantle_path: Set(spec.mantle_path.as_str().to_owned()),
            retention_modes: Set(serde_json::json!(
                spec.retention_modes
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
            )),
            input_price_micros_per_mtok: Set(spec.input_price.micros()),
            output_price_micros_per_mtok: Set(spec.output_price.micros()),
            cached_input_price_micros_per_mtok: Set(spec.cached_input_price.map(Price::micros)),
            cache_write_price_micros_per_mtok: Set(spec.cache_write_price.map(Price::micros)),
            service_tier_price_factors: Set(serde_json::json!(spec.service_tier_price_factors)),
            updated_at: Set(self.clock.now()),
            revision: Set(existing.as_ref().map_or(1, |e| e.revision + 1)),
        };
        let saved = if existing.is_some() {
            row.update(&*tx).await?
        } else {
            row.insert(&*tx).await?
        };
        let after = to_domain(saved)?;
        if before.as_ref().map(|b| CatalogModel {
            updated_at: after.updated_at,
            ..b.clone()
        }) != Some(after.clone())
        {
            let change = Change {
                action: "model.put",
                target_type: "model",
                target_id: model_id.to_string(),
                before: before.as_ref().and_then(snapshot),
                after: snapshot(&after),
            };
            record(&*tx, actor, after.updated_at, change).await?;
            tx.commit().await?;
            return Ok((after, before.is_none()));
        }
        // Nothing changed: keep the old timestamp and write nothing.
        drop(tx);
        Ok((before.unwrap_or(after), false))
    }
}
