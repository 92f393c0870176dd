//! What the reconciler keeps per project (AWS ids, conditions, schedule), the leases
//! replicas claim work with, the extra resources a project owns, and the reports of
//! the environment-wide passes (cost-allocation tags, tag coverage).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    Resources,
}

#[derive(DeriveIden)]
enum ProjectSync {
    Table,
    ProjectId,
    MantleProjectId,
    MantleProjectArn,
    /// A Mantle create was sent whose answer may not have been recorded.
    MantlePending,
    RoleArn,
    Conditions,
    NextAttemptAt,
    Attempts,
    CleanedUp,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Leases {
    Table,
    Name,
    Owner,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum ReconcileReports {
    Table,
    Name,
    Body,
    GeneratedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Projects::Table)
                    .add_column(json_binary(Projects::Resources).default("[]"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProjectSync::Table)
                    .col(uuid(ProjectSync::ProjectId).primary_key())
                    .col(string_len_null(ProjectSync::MantleProjectId, 128))
                    .col(string_len_null(ProjectSync::MantleProjectArn, 256))
                    .col(boolean(ProjectSync::MantlePending).default(false))
                    .col(string_len_null(ProjectSync::RoleArn, 256))
                    .col(json_binary(ProjectSync::Conditions))
                    .col(timestamp_with_time_zone(ProjectSync::NextAttemptAt))
                    .col(integer(ProjectSync::Attempts))
                    .col(boolean(ProjectSync::CleanedUp))
                    .col(timestamp_with_time_zone(ProjectSync::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ProjectSync::Table, ProjectSync::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("project_sync_due")
                    .table(ProjectSync::Table)
                    .col(ProjectSync::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        // Every existing project is due at once.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO project_sync (project_id, conditions, next_attempt_at, attempts, cleaned_up, updated_at) \
                 SELECT id, '[]', created_at, 0, false, created_at FROM projects",
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Leases::Table)
                    .col(string_len(Leases::Name, 128).primary_key())
                    .col(string_len(Leases::Owner, 128))
                    .col(timestamp_with_time_zone(Leases::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ReconcileReports::Table)
                    .col(string_len(ReconcileReports::Name, 128).primary_key())
                    .col(json_binary(ReconcileReports::Body))
                    .col(timestamp_with_time_zone(ReconcileReports::GeneratedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ReconcileReports::Table.into_iden(),
            Leases::Table.into_iden(),
            ProjectSync::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Projects::Table)
                    .drop_column(Projects::Resources)
                    .to_owned(),
            )
            .await
    }
}
