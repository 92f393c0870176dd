//! Seeded model ids as Mantle names them. Four seeds carried Bedrock Runtime ids
//! (`-v1:0` suffixes, `moonshot.` for `moonshotai.`) or a model Mantle does not serve
//! (Mistral Large 24.11, whose place Mistral Large 3 takes), and `gpt-oss-safeguard`
//! does not serve the Responses API (docs/MANTLE.md, "Model ids"). Each catalog row is
//! renamed unless the operator already added the new id, and projects that allow the
//! old id allow the new one instead, with a new generation so the reconciler rewrites
//! their IAM policy. Keys keep the models they were minted with (the list is signed
//! into them), so a key restricted to a renamed model is re-created (OPERATIONS.md).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::prelude::Uuid;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Models {
    Table,
    Id,
    Provider,
    DisplayName,
    SupportsResponses,
    InputPriceMicrosPerMtok,
    OutputPriceMicrosPerMtok,
    Revision,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    AllowedModels,
    Generation,
    ResourceVersion,
    UpdatedAt,
}

/// One catalog row as seeded before and after this migration.
struct Seeded {
    id: &'static str,
    provider: &'static str,
    display_name: &'static str,
    input_micros: i64,
    output_micros: i64,
}

const RENAMES: &[(Seeded, Seeded)] = &[
    (
        Seeded {
            id: "mistral.mistral-large-2411-v1:0",
            provider: "mistral",
            display_name: "Mistral Large (24.11)",
            input_micros: 2_000_000,
            output_micros: 6_000_000,
        },
        Seeded {
            id: "mistral.mistral-large-3-675b-instruct",
            provider: "mistral",
            display_name: "Mistral Large 3",
            input_micros: 500_000,
            output_micros: 1_500_000,
        },
    ),
    (
        Seeded {
            id: "deepseek.v3-v1:0",
            provider: "deepseek",
            display_name: "DeepSeek-V3.1",
            input_micros: 580_000,
            output_micros: 1_680_000,
        },
        Seeded {
            id: "deepseek.v3.1",
            provider: "deepseek",
            display_name: "DeepSeek-V3.1",
            input_micros: 580_000,
            output_micros: 1_680_000,
        },
    ),
    (
        Seeded {
            id: "moonshot.kimi-k2-thinking",
            provider: "moonshot",
            display_name: "Kimi K2 Thinking",
            input_micros: 600_000,
            output_micros: 2_500_000,
        },
        Seeded {
            id: "moonshotai.kimi-k2-thinking",
            provider: "moonshotai",
            display_name: "Kimi K2 Thinking",
            input_micros: 600_000,
            output_micros: 2_500_000,
        },
    ),
    (
        Seeded {
            id: "qwen.qwen3-32b-v1:0",
            provider: "qwen",
            display_name: "Qwen3 32B",
            input_micros: 150_000,
            output_micros: 600_000,
        },
        Seeded {
            id: "qwen.qwen3-32b",
            provider: "qwen",
            display_name: "Qwen3 32B",
            input_micros: 150_000,
            output_micros: 600_000,
        },
    ),
];

const SAFEGUARD: &str = "openai.gpt-oss-safeguard-120b";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (old, new) in RENAMES {
            rename(manager, old, new).await?;
        }
        set_safeguard_responses(manager, false).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (old, new) in RENAMES {
            rename(manager, new, old).await?;
        }
        set_safeguard_responses(manager, true).await
    }
}

async fn exists(manager: &SchemaManager<'_>, id: &str) -> Result<bool, DbErr> {
    let query = Query::select()
        .column(Models::Id)
        .from(Models::Table)
        .and_where(Expr::col(Models::Id).eq(id))
        .to_owned();
    Ok(manager.get_connection().query_one(&query).await?.is_some())
}

/// Renames `from` to `to` in the catalog and in every project's allowed models. Does
/// nothing when `from` is gone (edited away) or `to` is already in the catalog.
async fn rename(manager: &SchemaManager<'_>, from: &Seeded, to: &Seeded) -> Result<(), DbErr> {
    if !exists(manager, from.id).await? || exists(manager, to.id).await? {
        return Ok(());
    }
    let now = chrono::Utc::now();
    let db = manager.get_connection();
    let mut update = Query::update()
        .table(Models::Table)
        .values([
            (Models::Id, to.id.into()),
            (Models::Provider, to.provider.into()),
            (Models::DisplayName, to.display_name.into()),
            (Models::Revision, Expr::col(Models::Revision).add(1)),
            (Models::UpdatedAt, now.into()),
        ])
        .and_where(Expr::col(Models::Id).eq(from.id))
        .to_owned();
    // An operator's own price is kept; only the seeded one follows the model.
    for (column, before, after) in [
        (
            Models::InputPriceMicrosPerMtok,
            from.input_micros,
            to.input_micros,
        ),
        (
            Models::OutputPriceMicrosPerMtok,
            from.output_micros,
            to.output_micros,
        ),
    ] {
        update.value(
            column,
            Expr::case(Expr::col(column).eq(before), after).finally(Expr::col(column)),
        );
    }
    db.execute(&update).await?;

    let projects = Query::select()
        .columns([Projects::Id, Projects::AllowedModels])
        .from(Projects::Table)
        .to_owned();
    for row in db.query_all(&projects).await? {
        let id: Uuid = row.try_get("", "id")?;
        let allowed: serde_json::Value = row.try_get("", "allowed_models")?;
        let Some(models) = allowed.as_array() else {
            continue;
        };
        if !models.iter().any(|m| m == from.id) {
            continue;
        }
        let mut renamed: Vec<&str> = Vec::with_capacity(models.len());
        for model in models.iter().filter_map(|m| m.as_str()) {
            let model = if model == from.id { to.id } else { model };
            if !renamed.contains(&model) {
                renamed.push(model);
            }
        }
        let update = Query::update()
            .table(Projects::Table)
            .values([
                (Projects::AllowedModels, serde_json::json!(renamed).into()),
                (Projects::Generation, Expr::col(Projects::Generation).add(1)),
                (
                    Projects::ResourceVersion,
                    Expr::col(Projects::ResourceVersion).add(1),
                ),
                (Projects::UpdatedAt, now.into()),
            ])
            .and_where(Expr::col(Projects::Id).eq(id))
            .to_owned();
        db.execute(&update).await?;
    }
    Ok(())
}

async fn set_safeguard_responses(manager: &SchemaManager<'_>, on: bool) -> Result<(), DbErr> {
    let update = Query::update()
        .table(Models::Table)
        .values([
            (Models::SupportsResponses, on.into()),
            (Models::Revision, Expr::col(Models::Revision).add(1)),
        ])
        .and_where(Expr::col(Models::Id).eq(SAFEGUARD))
        .to_owned();
    manager.get_connection().execute(&update).await.map(|_| ())
}
