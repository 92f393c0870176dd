use sea_orm::entity::prelude::*;

/// Where notifications go: a webhook (signed) or a Slack incoming webhook.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_destinations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    /// For Slack, only its scheme and host (the full URL is the secret).
    pub url: String,
    /// Sealed with the key-encryption key: a webhook's signing secret, or a Slack
    /// incoming webhook's URL.
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
