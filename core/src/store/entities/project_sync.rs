use sea_orm::entity::prelude::*;

/// The reconciler's record of a project: what exists on AWS, the conditions it
/// reports, and when it next looks at the project.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "project_sync")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: Uuid,
    pub mantle_project_id: Option<String>,
    pub mantle_project_arn: Option<String>,
    /// A Mantle create was sent whose answer may not have been recorded (the
    /// process died): look for the project by its tags before creating another.
    pub mantle_pending: bool,
    pub role_arn: Option<String>,
    /// `[Condition]` as JSON.
    pub conditions: Json,
    pub next_attempt_at: DateTimeUtc,
    /// Failed passes in a row; drives the backoff.
    pub attempts: i32,
    /// An archived project whose AWS resources are all removed.
    pub cleaned_up: bool,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::projects::Entity",
        from = "Column::ProjectId",
        to = "super::projects::Column::Id"
    )]
    Project,
}

impl Related<super::projects::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Project.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
