//! Anthropic's Messages API on Mantle: catalog models say whether they serve it (Claude
//! does, under `/anthropic/v1`, and nothing else there), and metered usage counts the
//! input tokens written to a prompt cache, which are billed at their own price. Seeds
//! Claude Opus 4.7, the first Claude that Mantle serves, at Anthropic's list prices at
//! the time of writing (input $5, output $25, cache read $0.50, cache write $6.25 per
//! million tokens); the catalog is editable as prices and regions change.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Models {
    Table,
    Id,
    Provider,
    DisplayName,
    SupportsChat,
    SupportsResponses,
    SupportsMessages,
    SupportsStreaming,
    SupportsMultipleChoices,
    SupportsLogprobs,
    AcceptsContentParts,
    Regions,
    MantlePath,
    InputPriceMicrosPerMtok,
    OutputPriceMicrosPerMtok,
    CachedInputPriceMicrosPerMtok,
    CacheWritePriceMicrosPerMtok,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UsageMinutes {
    Table,
    CacheWriteTokens,
}

const CLAUDE: &str = "anthropic.claude-opus-4-7";
const CLAUDE_REGIONS: &[&str] = &["us-east-1", "us-east-2", "us-west-2", "eu-west-1"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Models::Table)
                    .add_column(boolean(Models::SupportsMessages).default(false).to_owned())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(UsageMinutes::Table)
                    .add_column(
                        big_integer(UsageMinutes::CacheWriteTokens)
                            .default(0)
                            .to_owned(),
                    )
                    .to_owned(),
            )
            .await?;
        // A fixed time, so a fresh database always has the same catalog.
        let seeded_at = chrono::DateTime::parse_from_rfc3339("2026-12-06T00:00:00Z")
            .map_err(|e| DbErr::Migration(e.to_string()))?
            .with_timezone(&chrono::Utc);
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(Models::Table)
                    .columns([
                        Models::Id,
                        Models::Provider,
                        Models::DisplayName,
                        Models::SupportsChat,
                        Models::SupportsResponses,
                        Models::SupportsMessages,
                        Models::SupportsStreaming,
                        Models::SupportsMultipleChoices,
                        Models::SupportsLogprobs,
                        Models::AcceptsContentParts,
                        Models::Regions,
                        Models::MantlePath,
                        Models::InputPriceMicrosPerMtok,
                        Models::OutputPriceMicrosPerMtok,
                        Models::CachedInputPriceMicrosPerMtok,
                        Models::CacheWritePriceMicrosPerMtok,
                        Models::UpdatedAt,
                    ])
                    .values_panic([
                        CLAUDE.into(),
                        "anthropic".into(),
                        "Claude Opus 4.7".into(),
                        false.into(),
                        false.into(),
                        true.into(),
                        true.into(),
                        false.into(),
                        false.into(),
                        true.into(),
                        serde_json::json!(CLAUDE_REGIONS).into(),
                        "/anthropic/v1".into(),
                        5_000_000i64.into(),
                        25_000_000i64.into(),
                        500_000i64.into(),
                        6_250_000i64.into(),
                        seeded_at.into(),
                    ])
                    .on_conflict(OnConflict::column(Models::Id).do_nothing().to_owned())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .exec_stmt(
                // Every model under the path older releases cannot read, not just the
                // seeded one.
                Query::delete()
                    .from_table(Models::Table)
                    .and_where(Expr::col(Models::MantlePath).eq("/anthropic/v1"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(UsageMinutes::Table)
                    .drop_column(UsageMinutes::CacheWriteTokens)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Models::Table)
                    .drop_column(Models::SupportsMessages)
                    .to_owned(),
            )
            .await
    }
}
