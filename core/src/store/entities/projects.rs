use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "projects")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub display_name: String,
    pub environment: String,
    pub team: String,
    pub region: String,
    pub allowed_models: Json,
    /// Extra resource ARNs the project owns (cost tags are applied to them).
    pub resources: Json,
    pub data_retention: String,
    pub monthly_budget_cents: Option<i64>,
    pub rate_limit_rpm: Option<i64>,
    pub rate_limit_tpm: Option<i64>,
    pub status: String,
    pub generation: i64,
    pub observed_generation: i64,
    pub resource_version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub archived_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::project_tags::Entity")]
    Tags,
    #[sea_orm(has_one = "super::project_sync::Entity")]
    Sync,
}

impl Related<super::project_sync::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Sync.def()
    }
}

impl Related<super::project_tags::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Tags.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
