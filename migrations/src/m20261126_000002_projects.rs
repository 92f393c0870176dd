//! Projects, their cost tags and their members.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    Name,
    DisplayName,
    Environment,
    Team,
    Region,
    AllowedModels,
    DataRetention,
    MonthlyBudgetCents,
    RateLimitRpm,
    RateLimitTpm,
    Status,
    Generation,
    ObservedGeneration,
    ResourceVersion,
    CreatedAt,
    UpdatedAt,
    ArchivedAt,
}

#[derive(DeriveIden)]
enum ProjectTags {
    Table,
    ProjectId,
    Key,
    Value,
}

#[derive(DeriveIden)]
enum ProjectMembers {
    Table,
    ProjectId,
    Subject,
    Role,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Projects::Table)
                    .col(uuid(Projects::Id).primary_key())
                    .col(string_len(Projects::Name, 40))
                    .col(string_len(Projects::DisplayName, 512))
                    .col(string_len(Projects::Environment, 16))
                    .col(string_len(Projects::Team, 64))
                    .col(string_len(Projects::Region, 32))
                    .col(json_binary(Projects::AllowedModels))
                    .col(string_len(Projects::DataRetention, 16))
                    .col(big_integer_null(Projects::MonthlyBudgetCents))
                    .col(big_integer_null(Projects::RateLimitRpm))
                    .col(big_integer_null(Projects::RateLimitTpm))
                    .col(string_len(Projects::Status, 16))
                    .col(big_integer(Projects::Generation))
                    .col(big_integer(Projects::ObservedGeneration))
                    .col(big_integer(Projects::ResourceVersion))
                    .col(timestamp_with_time_zone(Projects::CreatedAt))
                    .col(timestamp_with_time_zone(Projects::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Projects::ArchivedAt))
                    .to_owned(),
            )
            .await?;
        // A name is unique among the environment's active projects; archived projects
        // free their name. Partial indexes: same syntax on Postgres and SQLite.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX projects_active_name ON projects (environment, name) WHERE archived_at IS NULL",
            )
            .await?;
        for (name, col) in [
            ("projects_team", Projects::Team),
            ("projects_environment", Projects::Environment),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Projects::Table)
                        .col(col)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(ProjectTags::Table)
                    .col(uuid(ProjectTags::ProjectId))
                    .col(string_len(ProjectTags::Key, 512))
                    .col(string_len(ProjectTags::Value, 1024))
                    .primary_key(
                        Index::create()
                            .col(ProjectTags::ProjectId)
                            .col(ProjectTags::Key),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ProjectTags::Table, ProjectTags::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("project_tags_key_value")
                    .table(ProjectTags::Table)
                    .col(ProjectTags::Key)
                    .col(ProjectTags::Value)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ProjectMembers::Table)
                    .col(uuid(ProjectMembers::ProjectId))
                    .col(string_len(ProjectMembers::Subject, 255))
                    .col(string_len(ProjectMembers::Role, 16))
                    .col(timestamp_with_time_zone(ProjectMembers::CreatedAt))
                    .col(timestamp_with_time_zone(ProjectMembers::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(ProjectMembers::ProjectId)
                            .col(ProjectMembers::Subject),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ProjectMembers::Table, ProjectMembers::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("project_members_subject")
                    .table(ProjectMembers::Table)
                    .col(ProjectMembers::Subject)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ProjectMembers::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ProjectTags::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Projects::Table).to_owned())
            .await
    }
}
