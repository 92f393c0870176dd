//! Signing in from a terminal with the OAuth 2.0 device authorization grant (RFC 8628):
//! strata says which identity provider and client to use (`GET /api/v1/auth/cli`), the
//! provider's discovery document gives its endpoints, the user approves a code in a
//! browser anywhere, and the CLI polls for the token meanwhile.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// What strata publishes for the CLI's sign-in.
#[derive(Debug, Clone, Deserialize)]
pub struct CliLogin {
    pub issuer: String,
    pub client_id: String,
    pub scopes: String,
    /// Which token the provider's answer carries for strata: `access_token` or `id_token`.
    pub token: String,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    device_authorization_endpoint: Option<String>,
    token_endpoint: String,
}

#[derive(Debug, Deserialize)]
struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Why the device flow cannot be used, so `login` can fall back to a pasted token.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

/// What a sign-in leaves: the token for strata and, when the provider gave one, how to
/// get a new one when it expires.
#[derive(Debug)]
pub struct SignedIn {
    pub token: String,
    pub refresh: Option<Refresh>,
}

/// A refresh token and where to trade it (RFC 6749 §6), as the credentials file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refresh {
    pub refresh_token: String,
    pub token_endpoint: String,
    pub client_id: String,
    /// Which token of the answer is strata's (`access_token` or `id_token`).
    pub token: String,
}

impl Refresh {
    /// New tokens for the refresh token (providers may rotate it: the new one is kept).
    pub async fn renew(&self, http: &reqwest::Client) -> anyhow::Result<SignedIn> {
        let response = http
            .post(&self.token_endpoint)
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", self.refresh_token.as_str()),
                ("client_id", self.client_id.as_str()),
            ])
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.token_endpoint))?;
        if !response.status().is_success() {
            let status = response.status();
            let error: Option<TokenError> = response.json().await.ok();
            bail!(
                "the identity provider refused to renew the sign-in ({status}{})",
                describe(error.as_ref())
            );
        }
        let tokens: serde_json::Value = response
            .json()
            .await
            .context("the identity provider's token answer is not JSON")?;
        let mut renewed = signed_in(&tokens, &self.token, &self.token_endpoint, &self.client_id)?;
        // A provider that does not rotate refresh tokens sends none back.
        if renewed.refresh.is_none() {
            renewed.refresh = Some(self.clone());
        }
        Ok(renewed)
    }
}

fn signed_in(
    tokens: &serde_json::Value,
    which: &str,
    token_endpoint: &str,
    client_id: &str,
) -> anyhow::Result<SignedIn> {
    let token = tokens[which]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the identity provider's answer has no {which}"))?;
    let refresh = tokens["refresh_token"].as_str().map(|r| Refresh {
        refresh_token: r.to_owned(),
        token_endpoint: token_endpoint.to_owned(),
        client_id: client_id.to_owned(),
        token: which.to_owned(),
    });
    Ok(SignedIn { token, refresh })
}

/// Runs the grant; `tell` shows the user where to go.
pub async fn sign_in(
    http: &reqwest::Client,
    login: &CliLogin,
    tell: impl Fn(&str),
) -> anyhow::Result<SignedIn> {
    let discovery_url = format!(
        "{}/.well-known/openid-configuration",
        login.issuer.trim_end_matches('/')
    );
    let discovery: Discovery = http
        .get(&discovery_url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("cannot read the identity provider's {discovery_url}"))?
        .json()
        .await
        .with_context(|| format!("{discovery_url} is not an OpenID discovery document"))?;
    let Some(device_endpoint) = discovery.device_authorization_endpoint else {
        return Err(Unsupported(format!(
            "the identity provider at {} offers no device authorization endpoint",
            login.issuer
        ))
        .into());
    };
    let response = http
        .post(&device_endpoint)
        .form(&[
            ("client_id", login.client_id.as_str()),
            ("scope", login.scopes.as_str()),
        ])
        .send()
        .await
        .with_context(|| format!("cannot reach {device_endpoint}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body: Option<TokenError> = response.json().await.ok();
        bail!(
            "the identity provider refused to start a device sign-in ({status}{})",
            describe(body.as_ref())
        );
    }
    let grant: DeviceAuthorization = response
        .json()
        .await
        .context("the identity provider's device authorization answer is not valid")?;
    match &grant.verification_uri_complete {
        Some(complete) => tell(&format!(
            "Open {complete}\n(or {} and enter the code {})",
            grant.verification_uri, grant.user_code
        )),
        None => tell(&format!(
            "Open {} and enter the code {}",
            grant.verification_uri, grant.user_code
        )),
    }
    let deadline = Instant::now() + Duration::from_secs(grant.expires_in);
    // RFC 8628 §3.5: 5 s unless the provider says otherwise; `slow_down` adds 5 s.
    let mut interval = Duration::from_secs(grant.interval.unwrap_or(5).max(1));
    loop {
        tokio::time::sleep(interval).await;
        if Instant::now() > deadline {
            bail!("the code expired before it was approved: run `strata login` again");
        }
        let response = http
            .post(&discovery.token_endpoint)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", grant.device_code.as_str()),
                ("client_id", login.client_id.as_str()),
            ])
            .send()
            .await
            .with_context(|| format!("cannot reach {}", discovery.token_endpoint))?;
        if response.status().is_success() {
            let tokens: serde_json::Value = response
                .json()
                .await
                .context("the identity provider's token answer is not JSON")?;
            return signed_in(
                &tokens,
                &login.token,
                &discovery.token_endpoint,
                &login.client_id,
            );
        }
        let status = response.status();
        let error: Option<TokenError> = response.json().await.ok();
        match error.as_ref().map(|e| e.error.as_str()) {
            Some("authorization_pending") => {}
            Some("slow_down") => interval += Duration::from_secs(5),
            Some("access_denied") => bail!("the sign-in was denied"),
            Some("expired_token") => {
                bail!("the code expired before it was approved: run `strata login` again")
            }
            _ => bail!(
                "the identity provider refused the token request ({status}{})",
                describe(error.as_ref())
            ),
        }
    }
}

fn describe(error: Option<&TokenError>) -> String {
    match error {
        Some(TokenError {
            error,
            error_description: Some(d),
        }) => format!(": {error}: {d}"),
        Some(TokenError { error, .. }) => format!(": {error}"),
        None => String::new(),
    }
}
