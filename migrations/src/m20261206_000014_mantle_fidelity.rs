//! Mantle's data-retention modes: each catalog model lists the modes it may be called
//! under (seeded with all four: no seeded model is known to require retention), and a
//! project's `data_retention` may now be `provider_data_share` (19 characters), so the
//! column widens on Postgres (SQLite does not enforce lengths). Catalog prices for
//! cached input and cache writes, null meaning the input price, and the path prefix
//! Mantle serves each model under (`/v1` for every seeded model).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Models {
    Table,
    RetentionModes,
    CachedInputPriceMicrosPerMtok,
    CacheWritePriceMicrosPerMtok,
    MantlePath,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    DataRetention,
}

const EVERY_MODE: &str = r#"["default","none","aws_review","provider_data_share"]"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE.
        for mut column in [
            json_binary(Models::RetentionModes)
                .default(EVERY_MODE)
                .to_owned(),
            big_integer_null(Models::CachedInputPriceMicrosPerMtok),
            big_integer_null(Models::CacheWritePriceMicrosPerMtok),
            string_len(Models::MantlePath, 32).default("/v1").to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Models::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .alter_table(
                    Table::alter()
                        .table(Projects::Table)
                        .modify_column(string_len(Projects::DataRetention, 32))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Models::RetentionModes,
            Models::CachedInputPriceMicrosPerMtok,
            Models::CacheWritePriceMicrosPerMtok,
            Models::MantlePath,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Models::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
