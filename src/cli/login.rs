//! `strata login`, `logout` and `whoami`: a person's session on a remote strata.

use std::io::BufRead;

use anyhow::{Context, bail};
use clap::Args;

use crate::client::credentials::{self, Credentials, Target};
use crate::client::device::{self, CliLogin};
use crate::client::{ApiClient, ClientError};

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The strata to sign in to, e.g. https://strata.example.com.
    #[arg(long = "url", env = "STRATA_URL")]
    url: String,
    /// Read a token from standard input (a CI secret, `strata token mint`'s output)
    /// instead of signing in with the identity provider.
    #[arg(long = "token-stdin")]
    token_stdin: bool,
}

#[derive(Debug, Args)]
pub struct WhoamiArgs {
    #[command(flatten)]
    target: Target,
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let url = args.url.trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("cannot start an HTTP client")?;
    let (token, refresh, method) = if args.token_stdin {
        (read_token(false)?, None, "token")
    } else {
        match cli_login(&http, &url).await? {
            Some(login) => match device::sign_in(&http, &login, |text| eprintln!("{text}")).await {
                Ok(signed_in) => (signed_in.token, signed_in.refresh, "device"),
                // A provider without the device grant: a token from it, pasted.
                Err(e) if e.downcast_ref::<device::Unsupported>().is_some() => {
                    eprintln!("{e}; paste a token from it (or from `strata token mint`):");
                    (read_token(true)?, None, "token")
                }
                Err(e) => return Err(e),
            },
            None => {
                eprintln!(
                    "{url} has no identity provider set up for the CLI; paste a token \
                     (from your identity provider or `strata token mint`):"
                );
                (read_token(true)?, None, "token")
            }
        }
    };
    let client = ApiClient::new(&url, &token);
    let me = client.get("/me").await.map_err(|e| match e {
        ClientError::Api { status, .. } if status == reqwest::StatusCode::UNAUTHORIZED => {
            anyhow::anyhow!("{url} does not accept this token: {e}")
        }
        other => other.into(),
    })?;
    let path = credentials::store(&Credentials {
        url: url.clone(),
        token,
        method: method.into(),
        refresh,
    })?;
    eprintln!(
        "Logged in to {url} as {} ({}); credentials in {}",
        me.body["subject"].as_str().unwrap_or_default(),
        roles(&me.body),
        path.display()
    );
    Ok(())
}

/// `None` when strata has no identity provider set up for the CLI.
async fn cli_login(http: &reqwest::Client, url: &str) -> anyhow::Result<Option<CliLogin>> {
    let endpoint = format!("{url}/api/v1/auth/cli");
    let response = http
        .get(&endpoint)
        .send()
        .await
        .with_context(|| format!("cannot reach strata at {url}"))?;
    match response.status() {
        reqwest::StatusCode::OK => {
            Ok(Some(response.json().await.with_context(|| {
                format!("{endpoint} answered something other than its JSON")
            })?))
        }
        reqwest::StatusCode::NOT_FOUND => Ok(None),
        status => bail!("{endpoint} answered {status}: is {url} a strata?"),
    }
}

fn read_token(prompted: bool) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the token from standard input")?;
    let token = line.trim().to_owned();
    if token.is_empty() {
        bail!(
            "no token given{}",
            if prompted { "" } else { " on standard input" }
        );
    }
    Ok(token)
}

pub async fn logout() -> anyhow::Result<()> {
    if credentials::remove()? {
        eprintln!("Logged out: removed {}", credentials::path()?.display());
    } else {
        eprintln!("Not logged in.");
    }
    Ok(())
}

pub async fn whoami(args: WhoamiArgs) -> anyhow::Result<()> {
    let client = args.target.client().await?;
    let me = client.get("/me").await?;
    println!(
        "{} ({}) at {}",
        me.body["subject"].as_str().unwrap_or_default(),
        roles(&me.body),
        client.url()
    );
    Ok(())
}

fn roles(me: &serde_json::Value) -> String {
    let roles: Vec<&str> = me["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .collect();
    if roles.is_empty() {
        "no global role".into()
    } else {
        roles.join(", ")
    }
}
