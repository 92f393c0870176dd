use sea_orm::entity::prelude::*;

/// Something to tell people about, recorded once (unique `dedupe_key`).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub kind: String,
    #[sea_orm(unique)]
    pub dedupe_key: String,
    pub environment: Option<String>,
    pub summary: String,
    pub payload: Json,
    /// Deliveries to the destinations that want it have been created.
    pub fanned_out: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
