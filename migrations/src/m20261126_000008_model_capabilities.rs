//! What the proxy must know about a model before it forwards a request: whether it
//! serves `n > 1` and `logprobs`, and whether it accepts message content as an array
//! of parts (the proxy flattens text parts for models that do not). `revision` grows
//! with every change, so the proxy's policy version sees catalog edits.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Models {
    Table,
    Id,
    SupportsMultipleChoices,
    SupportsLogprobs,
    AcceptsContentParts,
    Revision,
}

/// Seeded models that Mantle has been seen to refuse content arrays for: everything
/// but the GPT-OSS family. Flattening text parts loses nothing, so when in doubt the
/// catalog says "flatten".
const ACCEPT_CONTENT_PARTS: &[&str] = &[
    "openai.gpt-oss-120b",
    "openai.gpt-oss-20b",
    "openai.gpt-oss-safeguard-120b",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE.
        for column in [
            boolean(Models::SupportsMultipleChoices)
                .default(true)
                .to_owned(),
            boolean(Models::SupportsLogprobs).default(true).to_owned(),
            boolean(Models::AcceptsContentParts)
                .default(false)
                .to_owned(),
            big_integer(Models::Revision).default(1).to_owned(),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(Models::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .exec_stmt(
                Query::update()
                    .table(Models::Table)
                    .value(Models::AcceptsContentParts, true)
                    .and_where(Expr::col(Models::Id).is_in(ACCEPT_CONTENT_PARTS.iter().copied()))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Models::SupportsMultipleChoices,
            Models::SupportsLogprobs,
            Models::AcceptsContentParts,
            Models::Revision,
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
