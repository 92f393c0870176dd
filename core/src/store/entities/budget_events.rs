use sea_orm::entity::prelude::*;

/// A project's metered spend crossed a share of its monthly budget (once per
/// project, month and threshold).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "budget_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: Uuid,
    /// The UTC month, as its first day.
    #[sea_orm(primary_key, auto_increment = false)]
    pub month: Date,
    /// 50, 80 or 100.
    #[sea_orm(primary_key, auto_increment = false)]
    pub threshold_percent: i16,
    pub spent_micros: i64,
    pub budget_micros: i64,
    pub recorded_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
