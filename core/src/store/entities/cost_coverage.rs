use sea_orm::entity::prelude::*;

/// The days `[fetched_from, fetched_to)` of one tag key that Cost Explorer has been
/// asked for.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "cost_coverage")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tag_key: String,
    pub fetched_from: Date,
    pub fetched_to: Date,
    pub refreshed_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
