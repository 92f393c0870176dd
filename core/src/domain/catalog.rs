//! The model catalog: which Mantle models exist, where, with which APIs, at what price.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{MantlePath, ModelId, Price, Region, RetentionMode, ServiceTier};
use crate::FieldError;

/// A model as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CatalogModel {
    pub id: ModelId,
    /// Who makes the model, e.g. `openai`, `mistral`.
    pub provider: String,
    pub display_name: String,
    /// Served through Chat Completions.
    pub supports_chat: bool,
    /// Served through the Responses API (today only the GPT-OSS models).
    pub supports_responses: bool,
    /// Served through Anthropic's Messages API (Claude, under `/anthropic/v1`).
    pub supports_messages: bool,
    pub supports_streaming: bool,
    /// Serves `n > 1` (several choices per request).
    pub supports_multiple_choices: bool,
    /// Serves `logprobs` / `top_logprobs`.
    pub supports_logprobs: bool,
    /// Accepts message content as an array of parts; when false the proxy flattens
    /// text parts to one string and refuses other parts.
    pub accepts_content_parts: bool,
    /// Mantle regions that offer the model.
    pub regions: Vec<Region>,
    /// Where Mantle serves the model (`/v1`, `/openai/v1` or `/anthropic/v1`); the
    /// proxy sends its calls there.
    pub mantle_path: MantlePath,
    /// The Mantle data-retention modes the model may be called under (a model that
    /// requires retention lacks `none`); a project whose mode is not listed may not
    /// allow the model.
    pub retention_modes: Vec<RetentionMode>,
    /// US dollars per million input tokens.
    #[schema(value_type = f64)]
    pub input_price_per_mtok_usd: Price,
    /// US dollars per million output tokens.
    #[schema(value_type = f64)]
    pub output_price_per_mtok_usd: Price,
    /// US dollars per million input tokens read from the prompt cache (the input price
    /// unless the catalog says otherwise).
    #[schema(value_type = f64)]
    pub cached_input_price_per_mtok_usd: Price,
    /// US dollars per million input tokens written to the prompt cache (the input
    /// price unless the catalog says otherwise).
    #[schema(value_type = f64)]
    pub cache_write_price_per_mtok_usd: Price,
    /// What a service tier costs as a factor of the prices above (e.g. `{"priority":
    /// 1.75, "flex": 0.5}`); a tier not listed costs the standard prices.
    pub service_tier_price_factors: BTreeMap<ServiceTier, f64>,
    pub updated_at: DateTime<Utc>,
}

impl CatalogModel {
    pub fn offered_in(&self, region: Region) -> bool {
        self.regions.contains(&region)
    }

    /// Whether a project whose Mantle project has `mode` may call the model. Under
    /// `inherit` the account's setting decides, which strata cannot see: Mantle does.
    pub fn allows_retention(&self, mode: RetentionMode) -> bool {
        mode == RetentionMode::Inherit || self.retention_modes.contains(&mode)
    }
}

/// The body of `PUT /api/v1/models/{id}`: the whole entry, created or replaced.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelUpsert {
    #[schema(example = "openai")]
    pub provider: String,
    #[schema(example = "gpt-oss-120b")]
    pub display_name: String,
    pub supports_chat: bool,
    pub supports_responses: bool,
    /// Default false; true exactly for models under `/anthropic/v1`.
    #[serde(default)]
    pub supports_messages: bool,
    pub supports_streaming: bool,
    /// Default true.
    #[serde(default = "yes")]
    pub supports_multiple_choices: bool,
    /// Default true.
    #[serde(default = "yes")]
    pub supports_logprobs: bool,
    /// Default false: the proxy flattens text parts, which loses nothing.
    #[serde(default)]
    pub accepts_content_parts: bool,
    pub regions: Vec<Region>,
    /// Default `/v1`.
    #[serde(default)]
    pub mantle_path: MantlePath,
    /// Default: every mode (`default`, `none`, `aws_review`, `provider_data_share`).
    #[serde(default = "every_retention_mode")]
    pub retention_modes: Vec<RetentionMode>,
    #[schema(example = 0.15)]
    pub input_price_per_mtok_usd: f64,
    #[schema(example = 0.6)]
    pub output_price_per_mtok_usd: f64,
    /// Default: the input price.
    #[serde(default)]
    #[schema(example = 0.015)]
    pub cached_input_price_per_mtok_usd: Option<f64>,
    /// Default: the input price.
    #[serde(default)]
    #[schema(example = 0.1875)]
    pub cache_write_price_per_mtok_usd: Option<f64>,
    /// Default: none (every tier at the standard prices). Factors of 0 to 10; `default`
    /// is the standard tier itself and cannot be given.
    #[serde(default)]
    pub service_tier_price_factors: BTreeMap<ServiceTier, f64>,
}

/// A validated catalog entry without its timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub provider: String,
    pub display_name: String,
    pub supports_chat: bool,
    pub supports_responses: bool,
    pub supports_messages: bool,
    pub supports_streaming: bool,
    pub supports_multiple_choices: bool,
    pub supports_logprobs: bool,
    pub accepts_content_parts: bool,
    pub regions: Vec<Region>,
    pub mantle_path: MantlePath,
    pub retention_modes: Vec<RetentionMode>,
    pub input_price: Price,
    pub output_price: Price,
    /// `None`: the input price.
    pub cached_input_price: Option<Price>,
    /// `None`: the input price.
    pub cache_write_price: Option<Price>,
    pub service_tier_price_factors: BTreeMap<ServiceTier, f64>,
}

fn yes() -> bool {
    true
}

fn every_retention_mode() -> Vec<RetentionMode> {
    RetentionMode::FOR_MODELS.to_vec()
}

impl ModelUpsert {
    pub fn validate(&self) -> Result<ModelSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let provider_ok = (1..=64).contains(&self.provider.len())
            && self
                .provider
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !provider_ok {
            errors.push(FieldError::new(
                "provider",
                "must be 1 to 64 lowercase letters, digits or '-'",
            ));
        }
        let n = self.display_name.chars().count();
        if n == 0
            || n > 128
            || self.display_name.trim().is_empty()
            || self.display_name.chars().any(char::is_control)
        {
            errors.push(FieldError::new(
                "display_name",
                "must be 1 to 128 printable characters and not blank",
            ));
        }
        if !self.supports_chat && !self.supports_responses && !self.supports_messages {
            errors.push(FieldError::new(
                "supports_chat",
                "a model must support Chat Completions, Responses or Messages",
            ));
        }
        // Mantle serves the Messages API only under `/anthropic/v1`, and nothing else
        // there ("Claude on Mantle only supports the Messages API").
        let anthropic = self.mantle_path == MantlePath::AnthropicV1;
        if self.supports_messages != anthropic {
            errors.push(FieldError::new(
                "supports_messages",
                "Mantle serves the Messages API under mantle_path '/anthropic/v1' only: set both or neither",
            ));
        }
        if anthropic && (self.supports_chat || self.supports_responses) {
            errors.push(FieldError::new(
                "mantle_path",
                "models under '/anthropic/v1' serve only the Messages API: supports_chat and supports_responses must be false",
            ));
        }
        let regions: BTreeSet<Region> = self.regions.iter().copied().collect();
        if regions.len() != self.regions.len() {
            errors.push(FieldError::new("regions", "lists a region twice"));
        }
        let modes: BTreeSet<RetentionMode> = self.retention_modes.iter().copied().collect();
        if modes.len() != self.retention_modes.len() {
            errors.push(FieldError::new("retention_modes", "lists a mode twice"));
        }
        if modes.is_empty() {
            errors.push(FieldError::new(
                "retention_modes",
                "must list at least one of: default, none, aws_review, provider_data_share",
            ));
        }
        if modes.contains(&RetentionMode::Inherit) {
            errors.push(FieldError::new(
                "retention_modes",
                "'inherit' is a project's or account's setting, not a mode a model is called under",
            ));
        }
        for (tier, factor) in &self.service_tier_price_factors {
            if *tier == ServiceTier::Default {
                errors.push(FieldError::new(
                    "service_tier_price_factors",
                    "'default' is the standard tier, priced by the prices themselves",
                ));
            }
            if !(0.0..=10.0).contains(factor) {
                errors.push(FieldError::new(
                    "service_tier_price_factors",
                    format!("the factor for '{tier}' must be from 0 to 10"),
                ));
            }
        }
        let input_price = Price::from_usd_per_mtok(self.input_price_per_mtok_usd)
            .map_err(|e| errors.push(FieldError::new("input_price_per_mtok_usd", e)))
            .ok();
        let output_price = Price::from_usd_per_mtok(self.output_price_per_mtok_usd)
            .map_err(|e| errors.push(FieldError::new("output_price_per_mtok_usd", e)))
            .ok();
        let mut optional_price = |field: &str, value: Option<f64>| {
            value.and_then(|v| {
                Price::from_usd_per_mtok(v)
                    .map_err(|e| errors.push(FieldError::new(field, e)))
                    .ok()
            })
        };
        let cached_input_price = optional_price(
            "cached_input_price_per_mtok_usd",
            self.cached_input_price_per_mtok_usd,
        );
        let cache_write_price = optional_price(
            "cache_write_price_per_mtok_usd",
            self.cache_write_price_per_mtok_usd,
        );
        match (input_price, output_price) {
            (Some(input_price), Some(output_price)) if errors.is_empty() => Ok(ModelSpec {
                provider: self.provider.clone(),
                display_name: self.display_name.clone(),
                supports_chat: self.supports_chat,
                supports_responses: self.supports_responses,
                supports_messages: self.supports_messages,
                supports_streaming: self.supports_streaming,
                supports_multiple_choices: self.supports_multiple_choices,
                supports_logprobs: self.supports_logprobs,
                accepts_content_parts: self.accepts_content_parts,
                regions: regions.into_iter().collect(),
                mantle_path: self.mantle_path,
                retention_modes: modes.into_iter().collect(),
                input_price,
                output_price,
                cached_input_price,
                cache_write_price,
                service_tier_price_factors: self.service_tier_price_factors.clone(),
            }),
            _ => Err(errors),
        }
    }
}
