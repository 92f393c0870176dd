//! The model catalog, seeded with the models Bedrock's OpenAI-compatible endpoint
//! (Mantle) serves. Prices are list prices in US dollars per million tokens at the
//! time of writing; they change, which is why the catalog is editable
//! (`PUT /api/v1/models/{id}`).

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
    SupportsStreaming,
    Regions,
    InputPriceMicrosPerMtok,
    OutputPriceMicrosPerMtok,
    UpdatedAt,
}

const ALL_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "ap-northeast-1",
    "ap-south-1",
    "ap-southeast-3",
    "eu-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-south-1",
    "eu-north-1",
    "sa-east-1",
];
const US_EU: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "eu-central-1",
    "eu-west-1",
    "eu-north-1",
];
const US: &[&str] = &["us-east-1", "us-east-2", "us-west-2"];

struct Seed {
    id: &'static str,
    provider: &'static str,
    display_name: &'static str,
    responses: bool,
    regions: &'static [&'static str],
    input_micros: i64,
    output_micros: i64,
}

const SEED: &[Seed] = &[
    Seed {
        id: "openai.gpt-oss-120b",
        provider: "openai",
        display_name: "gpt-oss-120b",
        responses: true,
        regions: ALL_REGIONS,
        input_micros: 150_000,
        output_micros: 600_000,
    },
    Seed {
        id: "openai.gpt-oss-20b",
        provider: "openai",
        display_name: "gpt-oss-20b",
        responses: true,
        regions: ALL_REGIONS,
        input_micros: 75_000,
        output_micros: 300_000,
    },
    Seed {
        id: "openai.gpt-oss-safeguard-120b",
        provider: "openai",
        display_name: "gpt-oss-safeguard-120b",
        responses: true,
        regions: US_EU,
        input_micros: 150_000,
        output_micros: 600_000,
    },
    Seed {
        id: "mistral.mistral-large-2411-v1:0",
        provider: "mistral",
        display_name: "Mistral Large (24.11)",
        responses: false,
        regions: US_EU,
        input_micros: 2_000_000,
        output_micros: 6_000_000,
    },
    Seed {
        id: "deepseek.v3-v1:0",
        provider: "deepseek",
        display_name: "DeepSeek-V3.1",
        responses: false,
        regions: US_EU,
        input_micros: 580_000,
        output_micros: 1_680_000,
    },
    Seed {
        id: "google.gemma-3-27b-it",
        provider: "google",
        display_name: "Gemma 3 27B IT",
        responses: false,
        regions: US_EU,
        input_micros: 230_000,
        output_micros: 380_000,
    },
    Seed {
        id: "moonshot.kimi-k2-thinking",
        provider: "moonshot",
        display_name: "Kimi K2 Thinking",
        responses: false,
        regions: US,
        input_micros: 600_000,
        output_micros: 2_500_000,
    },
    Seed {
        id: "minimax.minimax-m2",
        provider: "minimax",
        display_name: "MiniMax M2",
        responses: false,
        regions: US,
        input_micros: 300_000,
        output_micros: 1_200_000,
    },
    Seed {
        id: "nvidia.nemotron-nano-9b-v2",
        provider: "nvidia",
        display_name: "NVIDIA Nemotron Nano 9B v2",
        responses: false,
        regions: US,
        input_micros: 60_000,
        output_micros: 230_000,
    },
    Seed {
        id: "qwen.qwen3-32b-v1:0",
        provider: "qwen",
        display_name: "Qwen3 32B",
        responses: false,
        regions: US_EU,
        input_micros: 150_000,
        output_micros: 600_000,
    },
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Models::Table)
                    .col(string_len(Models::Id, 128).primary_key())
                    .col(string_len(Models::Provider, 64))
                    .col(string_len(Models::DisplayName, 128))
                    .col(boolean(Models::SupportsChat))
                    .col(boolean(Models::SupportsResponses))
                    .col(boolean(Models::SupportsStreaming))
                    .col(json_binary(Models::Regions))
                    .col(big_integer(Models::InputPriceMicrosPerMtok))
                    .col(big_integer(Models::OutputPriceMicrosPerMtok))
                    .col(timestamp_with_time_zone(Models::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        let mut insert = Query::insert()
            .into_table(Models::Table)
            .columns([
                Models::Id,
                Models::Provider,
                Models::DisplayName,
                Models::SupportsChat,
                Models::SupportsResponses,
                Models::SupportsStreaming,
                Models::Regions,
                Models::InputPriceMicrosPerMtok,
                Models::OutputPriceMicrosPerMtok,
                Models::UpdatedAt,
            ])
            .to_owned();
        // A fixed time, so a fresh database always has the same catalog.
        let seeded_at = chrono::DateTime::parse_from_rfc3339("2026-11-26T00:00:00Z")
            .map_err(|e| DbErr::Migration(e.to_string()))?
            .with_timezone(&chrono::Utc);
        for s in SEED {
            insert.values_panic([
                s.id.into(),
                s.provider.into(),
                s.display_name.into(),
                true.into(),
                s.responses.into(),
                true.into(),
                serde_json::json!(s.regions).into(),
                s.input_micros.into(),
                s.output_micros.into(),
                seeded_at.into(),
            ]);
        }
        manager.exec_stmt(insert).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Models::Table).to_owned())
            .await
    }
}
