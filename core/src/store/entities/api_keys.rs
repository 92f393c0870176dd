use sea_orm::entity::prelude::*;

/// A scoped API key's metadata. The secret is never stored.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub owner: String,
    /// A JSON list of model ids; `None`: every model the project allows.
    pub models: Option<Json>,
    /// The signing key that signed it (keeps that key verifying until it expires).
    pub signing_kid: String,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
    pub revoked_by: Option<String>,
    pub last_used_at: Option<DateTimeUtc>,
    /// The key's own limits (requests / tokens per minute), if any.
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
