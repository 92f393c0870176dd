use anyhow::Context;
use clap::{Args, Subcommand};
use std::sync::Arc;
use strata_core::auth::{Actor, Principal};
use strata_core::clock::SystemClock;
use strata_core::config::{DatabaseConfig, KeysConfig};
use strata_core::domain::{NewApiKey, RateLimits, Subject};
use strata_core::keys::ApiKeyIssuer;
use strata_core::services::Services;

use super::output::{OutputArg, cell, print};
use crate::client::credentials::Target;
use crate::client::{Headers, encode};

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    action: KeysAction,
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Create a key for a project on a remote strata and print its secret (shown this
    /// once, on stdout only).
    Create(CreateArgs),
    /// A project's keys (never their secrets).
    List(ListArgs),
    /// Revoke a key: the proxy refuses it from its next policy snapshot on.
    Revoke(RevokeArgs),
    /// On the server, with its database: sign a key for a project without the API
    /// (bootstrap, break-glass); the secret is printed once.
    Sign(SignArgs),
    /// Make a new signing key active; the old one keeps verifying the keys it signed
    /// until they expire.
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    #[command(flatten)]
    target: Target,
    /// `NAME`, `ENV/NAME` or the project's id.
    #[arg(long)]
    project: String,
    /// A label for people, e.g. the workload that uses the key.
    #[arg(long)]
    name: String,
    /// Models the key may use (comma-separated); default: all the project allows.
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Lifetime: a number with s, m, h or d (e.g. 30d); default: the environment's maximum.
    #[arg(long = "expires-in")]
    expires_in: Option<String>,
    /// The key's own requests per minute (the project's limit applies as well).
    #[arg(long)]
    rpm: Option<u64>,
    /// The key's own tokens per minute (the project's limit applies as well).
    #[arg(long)]
    tpm: Option<u64>,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    output: OutputArg,
    /// `NAME`, `ENV/NAME` or the project's id.
    #[arg(long)]
    project: String,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    #[command(flatten)]
    target: Target,
    /// `NAME`, `ENV/NAME` or the project's id.
    #[arg(long)]
    project: String,
    /// The key's id (`strata keys list` shows it).
    key_id: String,
}

#[derive(Debug, Args)]
struct SignArgs {
    #[command(flatten)]
    database: DatabaseConfig,
    #[command(flatten)]
    keys: KeysConfig,
    /// Project id (UUID).
    #[arg(long)]
    project: String,
    /// A label for people, e.g. the workload that uses the key.
    #[arg(long)]
    name: String,
    /// Models the key may use (comma-separated); default: all the project allows.
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Lifetime: a number with s, m, h or d (e.g. 30d); default: the environment's maximum.
    #[arg(long = "expires-in")]
    expires_in: Option<String>,
    /// The key's own requests per minute (the project's limit applies as well).
    #[arg(long)]
    rpm: Option<u64>,
    /// The key's own tokens per minute (the project's limit applies as well).
    #[arg(long)]
    tpm: Option<u64>,
    /// Recorded as the key's owner and in the audit log.
    #[arg(long, default_value = "cli")]
    owner: String,
}

#[derive(Debug, Args)]
struct RotateArgs {
    #[command(flatten)]
    database: DatabaseConfig,
    #[command(flatten)]
    keys: KeysConfig,
}

pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    match args.action {
        KeysAction::Create(args) => create(args).await,
        KeysAction::List(args) => list(args).await,
        KeysAction::Revoke(args) => revoke(args).await,
        KeysAction::Sign(args) => sign(args).await,
        KeysAction::Rotate(args) => rotate(args).await,
    }
}

fn lifetime(expires_in: Option<&str>) -> anyhow::Result<Option<u64>> {
    Ok(expires_in
        .map(|text| super::parse_duration("--expires-in", text))
        .transpose()?
        .map(|secs| secs.unsigned_abs()))
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let client = args.target.client().await?;
    let project = client.find_project(&args.project).await?;
    let id = project["id"].as_str().unwrap_or_default();
    let body = NewApiKey {
        name: args.name,
        models: args.models,
        expires_in: lifetime(args.expires_in.as_deref())?,
        rate_limits: Some(RateLimits {
            rpm: args.rpm,
            tpm: args.tpm,
        }),
    };
    let created = client
        .post(&format!("/projects/{id}/keys"), &body, Headers::default())
        .await?
        .body;
    eprintln!(
        "key {} for {}/{}, expires {} — the secret is printed once:",
        cell(&created["id"]),
        cell(&project["environment"]),
        cell(&project["name"]),
        cell(&created["expires_at"])
    );
    println!("{}", created["secret"].as_str().unwrap_or_default());
    Ok(())
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = args.target.client().await?;
    let project = client.find_project(&args.project).await?;
    let id = project["id"].as_str().unwrap_or_default();
    let keys = client.list_all(&format!("/projects/{id}/keys")).await?;
    let rows = keys
        .iter()
        .map(|k| {
            vec![
                cell(&k["id"]),
                cell(&k["name"]),
                cell(&k["owner"]),
                cell(&k["status"]),
                if k["models"].is_null() {
                    "(project's)".into()
                } else {
                    cell(&k["models"])
                },
                cell(&k["expires_at"]),
                cell(&k["last_used_at"]),
            ]
        })
        .collect();
    print(
        args.output.output,
        &serde_json::Value::Array(keys),
        &[
            "ID",
            "NAME",
            "OWNER",
            "STATUS",
            "MODELS",
            "EXPIRES",
            "LAST_USED",
        ],
        rows,
    );
    Ok(())
}

async fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let client = args.target.client().await?;
    let project = client.find_project(&args.project).await?;
    let id = project["id"].as_str().unwrap_or_default();
    let key = client
        .post(
            &format!("/projects/{id}/keys/{}/revoke", encode(&args.key_id)),
            &serde_json::json!({}),
            Headers::default(),
        )
        .await?
        .body;
    eprintln!(
        "key {} ({}) is {}",
        cell(&key["id"]),
        cell(&key["name"]),
        cell(&key["status"])
    );
    Ok(())
}

async fn load(
    database: &DatabaseConfig,
    keys: &KeysConfig,
) -> anyhow::Result<(Services, ApiKeyIssuer)> {
    let store = super::connect(database).await?;
    let issuer = ApiKeyIssuer::load(&store, keys, &SystemClock)
        .await
        .context(
            "cannot start the API-key signer (has the database been set up? run `strata migrate` \
             or `strata serve` once)",
        )?;
    Ok((Services::new(store, Arc::new(SystemClock)), issuer))
}

async fn sign(args: SignArgs) -> anyhow::Result<()> {
    let project = uuid::Uuid::parse_str(&args.project)
        .with_context(|| format!("--project '{}': expected a project id (UUID)", args.project))?;
    Subject::parse(&args.owner).map_err(|e| anyhow::anyhow!("--owner: {e}"))?;
    let expires_in = lifetime(args.expires_in.as_deref())?;
    let (services, issuer) = load(&args.database, &args.keys).await?;
    let actor = Actor {
        principal: Principal {
            subject: args.owner,
            roles: vec!["platform-admin".into()],
        },
        request_id: None,
    };
    let input = NewApiKey {
        name: args.name,
        models: args.models,
        expires_in,
        rate_limits: Some(RateLimits {
            rpm: args.rpm,
            tpm: args.tpm,
        }),
    };
    let created = services
        .create_api_key(&actor, &issuer, project, &input)
        .await
        .map_err(anyhow::Error::from)?;
    eprintln!(
        "key {} for project {project}, expires {} — the secret is printed once:",
        created.key.id, created.key.expires_at
    );
    println!("{}", created.secret);
    Ok(())
}

async fn rotate(args: RotateArgs) -> anyhow::Result<()> {
    let (services, issuer) = load(&args.database, &args.keys).await?;
    let rotation = issuer
        .rotate(&services.store, &SystemClock)
        .await
        .map_err(anyhow::Error::from)?;
    println!("active signing key: {}", rotation.active_kid);
    for old in rotation.retired {
        match old.verifies_until {
            Some(until) => println!(
                "retired {}: still verifies the keys it signed until {until}",
                old.kid
            ),
            None => println!(
                "retired {}: signed no live key; no longer published",
                old.kid
            ),
        }
    }
    Ok(())
}
