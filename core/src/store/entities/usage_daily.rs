use sea_orm::entity::prelude::*;

/// A project's metered usage on one UTC day: the rollup of its `usage_minutes`,
/// kept in the same transaction, so cost pages read days, not minutes.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_daily")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: Date,
    pub requests: i64,
    /// Micro-dollars at the catalog prices when the usage arrived.
    pub cost_micros: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
