use sea_orm::entity::prelude::*;

/// Where notifications go: a webhook (signed) or a Slack incoming webhook.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_destinations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub url: String,
    /// The webhook's signing secret, sealed with the key-encryption key.
    pub secret: Option<String>,
    /// Event kinds sent here; empty: all.
    pub events: Json,
    /// Only events of this environment; `None`: every environment.
    pub environment: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
