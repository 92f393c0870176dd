//! The responses table is keyed by a 16-byte digest of Mantle's id (the first half of
//! its SHA-256, as a `uuid`) instead of the id itself: every create inserts a row at a
//! random place in the primary key, and a 16-byte key makes that insert ~30 % cheaper
//! on Postgres than a ~37-character text one (BENCHMARKS.md, "Responses create: a
//! digest key"). The id stays a column, so a lookup by key can check it.
//!
//! Postgres computes the keys itself (`sha256`); SQLite has no SHA-256, so its keys
//! are computed here and the table rebuilt (SQLite cannot change a primary key). On a
//! large table this rewrites every row once.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::prelude::Uuid;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};
use sha2::{Digest, Sha256};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Responses {
    Table,
    Key,
    Id,
    ProjectId,
    KeyId,
    Model,
    Background,
    CreatedAt,
    Status,
    MeteredAt,
    ClaimedBy,
    ClaimedUntil,
}

/// The SQLite table being built while the old one still holds the rows.
#[derive(DeriveIden, Clone, Copy)]
enum ResponsesRebuilt {
    Table,
}

const UNMETERED_INDEX: &str = "responses_unmetered";

/// The columns both shapes of the table share, in the order the copies list them.
const SHARED_COLUMNS: &str = "id, project_id, key_id, model, background, created_at, status, \
    metered_at, claimed_by, claimed_until";

/// Rows read a time while SQLite's keys are computed.
const PAGE: u64 = 1_000;

/// The key of a response id. Frozen here as this migration wrote it; the application's
/// own (`strata_core::store::entities::responses::key_of`) must agree, which the
/// migration tests check.
fn key_of(id: &str) -> Uuid {
    let digest = Sha256::digest(id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

/// The table as SQLite holds it: keyed by the digest, or (before this migration) by
/// the id itself.
fn sqlite_table(name: impl IntoIden, keyed: bool) -> TableCreateStatement {
    let mut table = Table::create();
    table.table(name);
    if keyed {
        table
            .col(uuid(Responses::Key).primary_key())
            .col(string_len(Responses::Id, 256));
    } else {
        table.col(string_len(Responses::Id, 256).primary_key());
    }
    table
        .col(uuid(Responses::ProjectId))
        .col(uuid(Responses::KeyId))
        .col(string_len(Responses::Model, 128))
        .col(boolean(Responses::Background))
        .col(timestamp_with_time_zone(Responses::CreatedAt))
        .col(string_len(Responses::Status, 32))
        .col(timestamp_with_time_zone_null(Responses::MeteredAt))
        .col(string_len_null(Responses::ClaimedBy, 128))
        .col(timestamp_with_time_zone_null(Responses::ClaimedUntil))
        .to_owned()
}

/// Replaces SQLite's table by the one built, with its index.
async fn sqlite_swap(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .drop_table(Table::drop().table(Responses::Table).to_owned())
        .await?;
    manager
        .rename_table(
            Table::rename()
                .table(ResponsesRebuilt::Table, Responses::Table)
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name(UNMETERED_INDEX)
                .table(Responses::Table)
                .col(Responses::CreatedAt)
                .and_where(Expr::col(Responses::MeteredAt).is_null())
                .to_owned(),
        )
        .await
}

async fn sqlite_up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    manager
        .create_table(sqlite_table(ResponsesRebuilt::Table, true))
        .await?;
    let mut after = String::new();
    loop {
        let page = db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "SELECT id FROM responses WHERE id > ? ORDER BY id LIMIT ?",
                [after.clone().into(), PAGE.into()],
            ))
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.try_get("", "id")?;
        // The page's rows in one statement: (key, id) pairs joined to their rows.
        let mut values = Vec::with_capacity(page.len() * 2);
        for row in &page {
            let id: String = row.try_get("", "id")?;
            values.push(key_of(&id).into());
            values.push(id.into());
        }
        let pairs = vec!["(?, ?)"; page.len()].join(", ");
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!(
                "INSERT INTO responses_rebuilt (key, {SHARED_COLUMNS}) \
                 SELECT page.column1, {SHARED_COLUMNS} FROM (VALUES {pairs}) AS page \
                 JOIN responses ON responses.id = page.column2"
            ),
            values,
        ))
        .await?;
    }
    sqlite_swap(manager).await
}

async fn sqlite_down(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(sqlite_table(ResponsesRebuilt::Table, false))
        .await?;
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "INSERT INTO responses_rebuilt ({SHARED_COLUMNS}) \
             SELECT {SHARED_COLUMNS} FROM responses"
        ))
        .await?;
    sqlite_swap(manager).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// SQLite's rebuild runs in one transaction too: all of it or none, and no commit
    /// per row.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return sqlite_up(manager).await;
        }
        // The same digest as `key_of`: the first 16 bytes of SHA-256 of the id's UTF-8.
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE responses ADD COLUMN key uuid;
                 UPDATE responses SET key = encode(substring(sha256(convert_to(id, 'UTF8')) \
                    FROM 1 FOR 16), 'hex')::uuid;
                 ALTER TABLE responses ALTER COLUMN key SET NOT NULL;
                 ALTER TABLE responses DROP CONSTRAINT responses_pkey;
                 ALTER TABLE responses ADD PRIMARY KEY (key);",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return sqlite_down(manager).await;
        }
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE responses DROP CONSTRAINT responses_pkey;
                 ALTER TABLE responses ADD PRIMARY KEY (id);
                 ALTER TABLE responses DROP COLUMN key;",
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_the_first_half_of_the_ids_sha256() {
        // `printf resp_1 | sha256sum`, its first 32 hex digits; Postgres's
        // `sha256(convert_to('resp_1', 'UTF8'))` gives the same.
        assert_eq!(
            key_of("resp_1").simple().to_string(),
            "7a8babb8a11671dfe03c4a5e8f77c6db"
        );
    }
}
