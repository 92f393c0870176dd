use sea_orm::entity::prelude::*;

/// A Responses API id and the project that created it; for background responses,
/// whether they have been metered and which proxy is following them.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "responses")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: Uuid,
    pub key_id: Uuid,
    pub model: String,
    pub background: bool,
    pub created_at: DateTimeUtc,
    pub status: String,
    pub metered_at: Option<DateTimeUtc>,
    pub claimed_by: Option<String>,
    pub claimed_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
