use sea_orm::entity::prelude::*;

/// One day's Cost Explorer cost for one environment and one value of one tag key.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "cost_daily")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tag_key: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: Date,
    /// Empty when the cost carries no `strata:environment` tag.
    #[sea_orm(primary_key, auto_increment = false)]
    pub environment: String,
    /// Empty when the cost carries no such tag ("untagged").
    #[sea_orm(primary_key, auto_increment = false)]
    pub tag_value: String,
    pub amount_micros: i64,
    pub unit: String,
    pub estimated: bool,
    pub fetched_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
