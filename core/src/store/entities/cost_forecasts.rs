use sea_orm::entity::prelude::*;

/// Cost Explorer's forecast of one environment's cost on `[period_start, period_end)`,
/// or why it gave none.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "cost_forecasts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub environment: String,
    pub period_start: Date,
    pub period_end: Date,
    pub amount_micros: Option<i64>,
    pub unit: Option<String>,
    pub error: Option<String>,
    pub fetched_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
