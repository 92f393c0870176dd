use std::sync::Arc;

use anyhow::bail;
use clap::{Args, Subcommand};
use strata_core::auth::{LocalIssuer, RbacPolicy};
use strata_core::clock::{Clock, SystemClock};
use strata_core::config::{AuthConfig, DatabaseConfig, KeysConfig};
use strata_core::keys::KeyEncryptionKey;

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    action: TokenAction,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Print a token signed by strata's local issuer (the key in the database).
    Mint(MintArgs),
}

#[derive(Debug, Args)]
struct MintArgs {
    #[command(flatten)]
    database: DatabaseConfig,
    #[command(flatten)]
    auth: AuthConfig,
    #[command(flatten)]
    keys: KeysConfig,
    /// The token's subject (`sub`), e.g. alice@example.com.
    #[arg(long, env = "STRATA_TOKEN_SUBJECT")]
    subject: String,
    /// A global role from the RBAC table; repeat for several.
    #[arg(
        long = "role",
        env = "STRATA_TOKEN_ROLES",
        value_delimiter = ',',
        required = true
    )]
    roles: Vec<String>,
    /// Lifetime: a number with s, m, h or d (e.g. 12h, 30d).
    #[arg(long, env = "STRATA_TOKEN_TTL", default_value = "24h")]
    ttl: String,
}

fn parse_ttl(text: &str) -> anyhow::Result<i64> {
    let secs = super::parse_duration("--ttl", text)?;
    if !(60..=366 * 86_400).contains(&secs) {
        bail!("--ttl '{text}': must be between 1 minute and 366 days");
    }
    Ok(secs)
}

pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let TokenAction::Mint(args) = args.action;
    let ttl = parse_ttl(&args.ttl)?;
    let rbac = RbacPolicy::load(args.auth.rbac_file.as_deref())?;
    if let Some(unknown) = args.roles.iter().find(|r| !rbac.has_role(r)) {
        let known: Vec<&str> = rbac.role_names().collect();
        bail!("unknown role '{unknown}'; roles: {}", known.join(", "));
    }
    strata_core::domain::Subject::parse(&args.subject)
        .map_err(|e| anyhow::anyhow!("--subject: {e}"))?;
    let store = super::connect(&args.database).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let kek = KeyEncryptionKey::from_config(&args.keys)?;
    let (issuer, _) = LocalIssuer::load_or_create(
        &store,
        &args.auth.local_issuer_name,
        &args.auth.audience,
        &kek,
        clock.as_ref(),
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{e} (has the database been set up? run `strata migrate` or `strata serve` once)"
        )
    })?;
    let token = issuer.mint(&args.subject, &args.roles, ttl, clock.as_ref())?;
    println!("{token}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("12h").ok(), Some(43_200));
        assert_eq!(parse_ttl("30d").ok(), Some(2_592_000));
        assert!(parse_ttl("10").is_err());
        assert!(parse_ttl("5s").is_err());
        assert!(parse_ttl("400d").is_err());
    }
}
