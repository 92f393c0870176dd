use clap::{Args, Subcommand};
use sea_orm_migration::MigratorTrait;
use strata_core::config::DatabaseConfig;
use strata_migrations::Migrator;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    database: DatabaseConfig,
    #[command(subcommand)]
    action: Option<MigrateAction>,
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Apply all pending migrations (the default).
    Up,
    /// Revert the last `steps` migrations.
    Down {
        #[arg(long, env = "STRATA_MIGRATE_STEPS", default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let store = super::connect(&args.database).await?;
    match args.action.unwrap_or(MigrateAction::Up) {
        MigrateAction::Up => {
            strata_migrations::up(store.db()).await?;
            tracing::info!(database.url = %args.database.redacted_url(), "migrations applied");
        }
        MigrateAction::Down { steps } => {
            Migrator::down(store.db(), Some(steps)).await?;
            tracing::info!(migrate.steps = steps, "migrations reverted");
        }
        MigrateAction::Status => {
            for m in Migrator::get_migration_with_status(store.db()).await? {
                println!("{}\t{}", m.status(), m.name());
            }
        }
    }
    Ok(())
}
