use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "models")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub provider: String,
    pub display_name: String,
    pub supports_chat: bool,
    pub supports_responses: bool,
    pub supports_streaming: bool,
    pub regions: Json,
    pub input_price_micros_per_mtok: i64,
    pub output_price_micros_per_mtok: i64,
    pub updated_at: DateTimeUtc,
    pub supports_multiple_choices: bool,
    pub supports_logprobs: bool,
    pub accepts_content_parts: bool,
    pub revision: i64,
    pub retention_modes: Json,
    /// Null: the input price.
    pub cached_input_price_micros_per_mtok: Option<i64>,
    /// Null: the input price.
    pub cache_write_price_micros_per_mtok: Option<i64>,
    pub mantle_path: String,
    pub supports_messages: bool,
    /// `{"priority": 1.75, …}`: a tier's price as a factor of the standard prices.
    pub service_tier_price_factors: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
