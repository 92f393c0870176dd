//! The binary as a newcomer uses it: `strata serve` with no configuration prints a
//! platform-admin token (and writes it 0600), `strata token mint` makes more, a project
//! created with the printed token is listed, and SIGTERM stops the server cleanly.

// A test crate: its helpers may unwrap as its tests do (clippy.toml covers only
// `#[test]` functions and `#[cfg(test)]` modules).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_testkit::free_port;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// `strata <args>` in `dir`, on the embedded database there.
fn strata_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(STRATA)
        .args(args)
        .current_dir(dir)
        .env_remove("STRATA_DATABASE_URL")
        .output()
        .unwrap()
}

/// `strata serve` in `dir` on the embedded database, listening on `port`, stdout piped,
/// stderr in `dir/serve.log`.
fn spawn_serve(dir: &std::path::Path, port: u16, env: &[(&str, &str)]) -> std::process::Child {
    Command::new(STRATA)
        .arg("serve")
        .current_dir(dir)
        .env("STRATA_LISTEN", format!("127.0.0.1:{port}"))
        .envs(env.iter().copied())
        .env_remove("STRATA_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(
            std::fs::File::create(dir.join("serve.log"))
                .map(Stdio::from)
                .unwrap(),
        )
        .spawn()
        .unwrap()
}

async fn get_json(client: &reqwest::Client, url: String, token: Option<&str>) -> Value {
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().json().await.unwrap_or_default()
}

#[tokio::test]
async fn first_start_prints_a_working_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let proxy_port = free_port();
    let mut server = spawn_serve(
        dir.path(),
        port,
        &[("STRATA_PROXY_LISTEN", &format!("127.0.0.1:{proxy_port}"))],
    );
    let stdout = server.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let printed = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("eyJ"))
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    assert!(!printed.is_empty(), "serve printed no token");

    let file = dir.path().join("strata-admin.token");
    let mode = std::fs::metadata(&file)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_default();
    assert_eq!(mode, 0o600, "the admin token file must be private");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_default().trim(),
        printed
    );
    assert!(
        dir.path().join("strata.db").exists(),
        "embedded SQLite file ./strata.db"
    );

    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not become ready: {}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = json!({"name": "hello", "environment": "dev", "team": "newcomers", "region": "us-east-1", "allowed_models": ["openai.gpt-oss-20b"]});
    let created = client
        .post(format!("{base}/api/v1/projects"))
        .bearer_auth(&printed)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let list: Value = get_json(&client, format!("{base}/api/v1/projects"), Some(&printed)).await;
    assert_eq!(list["items"][0]["name"], "hello");

    // The same command runs the proxy: it follows this control plane and answers a
    // key with the project's models (no AWS here, so no chat).
    let id = list["items"][0]["id"].as_str().unwrap_or_default();
    let key: Value = client
        .post(format!("{base}/api/v1/projects/{id}/keys"))
        .bearer_auth(&printed)
        .json(&json!({"name": "first"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = key["secret"].as_str().unwrap_or_default();
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let started = Instant::now();
    let models = loop {
        let r = client
            .get(format!("{proxy}/v1/models"))
            .bearer_auth(secret)
            .send()
            .await;
        if let Ok(r) = r
            && r.status().is_success()
        {
            break r.json::<Value>().await.unwrap_or_default();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the embedded proxy did not answer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(models["data"][0]["id"], "openai.gpt-oss-20b", "{models}");

    // A second process mints a developer token from the same database.
    let minted = strata_in(
        dir.path(),
        &[
            "token",
            "mint",
            "--subject",
            "alice@example.com",
            "--role",
            "developer",
            "--ttl",
            "2h",
        ],
    );
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let dev = String::from_utf8_lossy(&minted.stdout).trim().to_owned();
    let me: Value = get_json(&client, format!("{base}/api/v1/me"), Some(&dev)).await;
    assert_eq!(me["subject"], "alice@example.com");
    assert_eq!(me["roles"], json!(["developer"]));
    let bad = Command::new(STRATA)
        .args(["token", "mint", "--subject", "x", "--role", "emperor"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role 'emperor'"));

    // `strata keys sign` signs a key with the key in the database, encrypted with
    // the key file the first start created; `strata keys rotate` adds a signing key.
    let kek = dir.path().join("strata-secret.key");
    let mode = std::fs::metadata(&kek)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_default();
    assert_eq!(mode, 0o600, "the key encryption key file must be private");
    let project_id = list["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let created = strata_in(
        dir.path(),
        &[
            "keys",
            "sign",
            "--project",
            &project_id,
            "--name",
            "from-cli",
            "--expires-in",
            "1d",
            "--rpm",
            "30",
        ],
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let secret = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert!(secret.starts_with("sk-strata-eyJ"), "{secret}");
    assert!(
        !String::from_utf8_lossy(&created.stderr).contains(&secret),
        "the secret goes to stdout only"
    );
    let keys: Value = get_json(
        &client,
        format!("{base}/api/v1/projects/{project_id}/keys"),
        Some(&printed),
    )
    .await;
    let from_cli = keys["items"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["name"] == "from-cli"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(from_cli["owner"], "cli", "{keys}");
    assert_eq!(
        from_cli["rate_limits"],
        json!({"rpm": 30, "tpm": null}),
        "{keys}"
    );
    let too_long = strata_in(
        dir.path(),
        &[
            "keys",
            "sign",
            "--project",
            &project_id,
            "--name",
            "x",
            "--expires-in",
            "400d",
        ],
    );
    assert!(!too_long.status.success());
    assert!(
        String::from_utf8_lossy(&too_long.stderr).contains("expires_in: must be at most"),
        "{}",
        String::from_utf8_lossy(&too_long.stderr)
    );
    let rotated = strata_in(dir.path(), &["keys", "rotate"]);
    let out = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(out.contains("active signing key: api-keys-"), "{out}");
    assert!(
        out.contains("retired api-keys-1: still verifies the keys it signed until"),
        "{out}"
    );
    let jwks: Value = get_json(&client, format!("{base}/.well-known/jwks.json"), None).await;
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2), "{jwks}");

    // The container's healthcheck: 0 against a live strata, not 0 against nothing.
    let healthy = strata_in(dir.path(), &["health", "--url", &format!("{base}/healthz")]);
    assert!(
        healthy.status.success(),
        "{}",
        String::from_utf8_lossy(&healthy.stderr)
    );
    let nobody = strata_in(
        dir.path(),
        &[
            "health",
            "--url",
            "http://127.0.0.1:9/healthz",
            "--timeout",
            "1",
        ],
    );
    assert!(!nobody.status.success());
    assert!(
        String::from_utf8_lossy(&nobody.stderr).contains("did not answer"),
        "{}",
        String::from_utf8_lossy(&nobody.stderr)
    );

    // SIGTERM: a clean exit.
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "serve exited with {status} after SIGTERM");

    // `strata migrate status` lists what the first start applied.
    let again = strata_in(dir.path(), &["migrate", "status"]);
    assert!(
        String::from_utf8_lossy(&again.stdout)
            .contains("m20261126_000004_idempotency_and_signing_keys")
    );
}

/// `strata <args>` in `dir` with AWS pointed at moto (or, with `moto: None`, with no
/// AWS credentials anywhere).
fn strata_with_aws(
    dir: &std::path::Path,
    moto: Option<&str>,
    args: &[&str],
) -> std::process::Output {
    let mut cmd = Command::new(STRATA);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("STRATA_DATABASE_URL")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("STRATA_LOG", "warn");
    if let Some(url) = moto {
        cmd.env("AWS_ENDPOINT_URL", url)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
    }
    cmd.output().unwrap()
}

#[tokio::test]
async fn costs_refresh_stores_cost_explorer_figures_and_says_so_without_aws() {
    let dir = tempfile::tempdir().unwrap();
    let migrated = strata_in(dir.path(), &["migrate"]);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    let refused = strata_with_aws(dir.path(), None, &["costs", "refresh"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("AWS is not configured"), "{err}");

    // With moto: one query (strata:project by environment), its answer stored.
    let moto = strata_testkit::moto::moto_url();
    let _lock = strata_testkit::moto::lock_cost_results().await;
    let day = chrono::Utc::now().date_naive();
    let group = |env: &str, project: &str, amount: &str| {
        json!({"Keys": [format!("strata:environment${env}"), format!("strata:project${project}")],
               "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}}})
    };
    strata_testkit::moto::seed_cost_results(json!([{
        "GroupDefinitions": [],
        "ResultsByTime": [{
            "TimePeriod": {"Start": day.to_string(), "End": (day + chrono::Duration::days(1)).to_string()},
            "Total": {},
            "Groups": [group("prod", "checkout", "3.5"), group("", "", "0.25"), group("prod", "search", "1,5")],
            "Estimated": true
        }],
        "DimensionValueAttributes": []
    }]))
    .await;
    let service = format!(
        "strata-cli-test-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let refreshed = strata_with_aws(
        dir.path(),
        Some(&moto),
        &[
            "costs",
            "refresh",
            "--cost-services",
            &service,
            "--cost-history-days",
            "5",
        ],
    );
    let out = String::from_utf8_lossy(&refreshed.stdout);
    assert!(
        refreshed.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&refreshed.stderr)
    );
    // The cost query, then prod's month-end forecast (moto has none to give: its
    // refusal is stored and the page projects linearly).
    assert!(
        out.contains(
            "2 Cost Explorer call(s); 2 day × group figure(s) stored; refreshed: strata:project"
        ),
        "{out}"
    );
    assert!(out.contains("month-end forecast asked for: prod"), "{out}");
    // The row it could not read is named on the terminal; the others were stored. The
    // project `checkout` is none strata has: stored, counted as unattributed.
    let err = String::from_utf8_lossy(&refreshed.stderr);
    assert!(
        err.contains(&format!(
            "left out: GetCostAndUsage: the row of {day} for [strata:environment$prod, strata:project$search]: Metrics.UnblendedCost.Amount: not a number: \"1,5\""
        )),
        "{err}"
    );
    assert!(
        out.contains("1 row(s), $3.50, name an environment or project strata does not know"),
        "{out}"
    );
}

/// A supervisor (or test) that stops reading serve's stdout must not kill it: the
/// first-start message used to be printed with `println!`, which panics on a closed
/// pipe (this made `first_start_prints_a_working_admin_token` flaky).
#[tokio::test]
async fn serve_survives_a_closed_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = spawn_serve(
        dir.path(),
        port,
        &[("STRATA_SERVE_PROXY", "false"), ("STRATA_LOG", "warn")],
    );
    // Closed before serve writes anything.
    drop(server.stdout.take());
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let ready = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        let exited = server.try_wait().unwrap();
        assert!(
            exited.is_none() && started.elapsed() < Duration::from_secs(30),
            "serve {} before it was ready: {}",
            exited.map_or("was not ready in 30 s".to_owned(), |s| format!(
                "exited ({s})"
            )),
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    assert!(
        log.contains("cannot print the first-start message"),
        "{log}"
    );
    let _ = server.kill();
    let _ = server.wait();
}
