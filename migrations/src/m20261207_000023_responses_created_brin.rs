//! The hourly purge of Responses ids older than 45 days (`DELETE … WHERE created_at <
//! cutoff`) read the whole table. On Postgres a BRIN index on `created_at` lets it
//! read only the oldest pages: rows arrive in `created_at` order, so each range of
//! pages spans a short time. It takes a few kilobytes, and a create's insert lands on
//! the newest pages, which it leaves alone until vacuum summarises them (BENCHMARKS.md,
//! "Responses create: a digest key"). SQLite, for one node, has no BRIN and keeps its
//! full scan.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX responses_created_brin ON responses USING brin (created_at)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX responses_created_brin")
            .await?;
        Ok(())
    }
}
