//! The index the background followers' claim reads (`metered_at IS NULL`, oldest
//! first) holds only unmetered responses: every plain or streamed response is
//! metered when recorded, so indexing those too cost each record an index write that
//! no query reads.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Responses {
    Table,
    MeteredAt,
    ClaimedUntil,
    CreatedAt,
}

const OLD_INDEX: &str = "responses_pending";
const NEW_INDEX: &str = "responses_unmetered";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(OLD_INDEX)
                    .table(Responses::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(NEW_INDEX)
                    .table(Responses::Table)
                    .col(Responses::CreatedAt)
                    .and_where(Expr::col(Responses::MeteredAt).is_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(NEW_INDEX)
                    .table(Responses::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(OLD_INDEX)
                    .table(Responses::Table)
                    .col(Responses::MeteredAt)
                    .col(Responses::ClaimedUntil)
                    .to_owned(),
            )
            .await
    }
}
