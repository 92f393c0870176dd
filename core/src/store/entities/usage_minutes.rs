use sea_orm::entity::prelude::*;

/// Usage of one key and model in one minute, as the proxy metered it.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_minutes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub minute: DateTimeUtc,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub model: String,
    /// `default`, `priority`, `flex` or `reserved`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub service_tier: String,
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    /// Input tokens written to a prompt cache (Anthropic's `cache_creation_input_tokens`).
    pub cache_write_tokens: i64,
    /// Micro-dollars at the catalog prices when the usage arrived.
    pub cost_micros: i64,
    pub latency_ms_sum: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
