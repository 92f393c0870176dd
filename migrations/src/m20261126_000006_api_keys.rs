//! Scoped API keys for the proxy: their metadata (never the secret).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    ProjectId,
    Name,
    Owner,
    Models,
    SigningKid,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
    RevokedBy,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(uuid(ApiKeys::Id).primary_key())
                    .col(uuid(ApiKeys::ProjectId))
                    .col(string_len(ApiKeys::Name, 100))
                    .col(string_len(ApiKeys::Owner, 255))
                    // A JSON list of model ids; NULL: every model the project allows.
                    .col(json_binary_null(ApiKeys::Models))
                    .col(string_len(ApiKeys::SigningKid, 64))
                    .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                    .col(timestamp_with_time_zone(ApiKeys::ExpiresAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::RevokedAt))
                    .col(string_len_null(ApiKeys::RevokedBy, 255))
                    .col(timestamp_with_time_zone_null(ApiKeys::LastUsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiKeys::Table, ApiKeys::ProjectId)
                            .to(Projects::Table, Projects::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("api_keys_project")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::ProjectId)
                    .col(ApiKeys::Id)
                    .to_owned(),
            )
            .await?;
        // Which retired signing keys must still verify: those that signed a live key.
        manager
            .create_index(
                Index::create()
                    .name("api_keys_signing_kid")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::SigningKid)
                    .col(ApiKeys::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ApiKeys::Table).to_owned())
            .await
    }
}
