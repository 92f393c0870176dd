//! The client side as a platform team and a developer use it, against a real
//! `strata serve` (the database from STRATA_TEST_BACKEND): projects kept in files and
//! applied with `strata plan` / `apply`, sign-in from a terminal (a pasted token, and
//! the device flow against a test identity provider), keys and RBAC from the CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Output, Stdio};

use common::*;
use serde_json::{Value, json};
use strata_testkit::{FakeIdp, FakeMantle, TestDb};

/// A `strata` client command with its own config directory (`home`), talking to `url`
/// with `token` (when given).
async fn cli(home: &Path, url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(STRATA);
    cmd.args(args)
        .env("XDG_CONFIG_HOME", home)
        .env("HOME", home)
        .env("STRATA_LOG", "warn")
        .env_remove("STRATA_TOKEN")
        .env("STRATA_URL", url)
        .current_dir(home);
    if let Some(token) = token {
        cmd.env("STRATA_TOKEN", token);
    }
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap()
}

/// `strata login` with its own config directory (`home`), `input` on its stdin.
async fn login_with(home: &Path, args: &[&str], input: &str) -> Output {
    let mut login = std::process::Command::new(STRATA);
    login
        .arg("login")
        .args(args)
        .env("XDG_CONFIG_HOME", home)
        .env("HOME", home)
        .env_remove("STRATA_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = login.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

/// `strata serve` trusting `idp`, with a CLI client there.
async fn serve_with_idp(dir: &Path, db: &TestDb, mantle: &FakeMantle, idp: &FakeIdp) -> Server {
    let port = strata_testkit::free_port();
    let child = strata(&["serve"], dir, &db.url, mantle, 5)
        .env("STRATA_LISTEN", format!("127.0.0.1:{port}"))
        .env("STRATA_ADMIN_TOKEN_FILE", dir.join("admin.token"))
        .env("STRATA_OIDC_ISSUER", &idp.issuer)
        .env("STRATA_OIDC_JWKS_URL", &idp.jwks_url)
        .env("STRATA_OIDC_CLI_CLIENT_ID", "strata-cli")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ready(child, port, "strata serve").await
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn api(
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{base}/api/v1{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

async fn projects(base: &str, token: &str) -> Vec<Value> {
    let (_, list) = api(
        base,
        token,
        reqwest::Method::GET,
        "/projects?status=active&limit=200",
        None,
    )
    .await;
    list["items"].as_array().cloned().unwrap_or_default()
}

fn find<'a>(list: &'a [Value], env: &str, name: &str) -> &'a Value {
    list.iter()
        .find(|p| p["environment"] == env && p["name"] == name)
        .unwrap_or_else(|| panic!("{env}/{name} not in {list:?}"))
}

const PROD: &str = "\
projects:
  - name: checkout-api
    environment: prod
    team: payments
    region: us-east-1
    allowed_models: [openai.gpt-oss-120b]
    tags:
      CostCenter: cc-1234
    monthly_budget_usd: 500
    members:
      alice@example.com: owner
      dev@example.com: developer
  - name: search
    environment: prod
    team: discovery
    region: us-east-1
    allowed_models: [openai.gpt-oss-20b]
";

const DEV: &str = "\
name: sandbox
environment: dev
team: ml
region: us-west-2
allowed_models: [openai.gpt-oss-20b]
rate_limits: {rpm: 60}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_as_code_plan_apply_twice_prune_and_a_concurrent_edit() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mantle = FakeMantle::start().await;
    let server = serve(dir.path(), &db.url, &mantle, 5).await;
    let token = admin_token(dir.path());
    let (base, home) = (server.base.as_str(), dir.path());
    let files = home.join("projects");
    std::fs::create_dir_all(files.join("prod")).unwrap();
    std::fs::write(files.join("prod/projects.yaml"), PROD).unwrap();
    std::fs::write(files.join("dev.yml"), DEV).unwrap();
    std::fs::write(files.join("README.md"), "not a project file").unwrap();
    let dir_arg = files.to_str().unwrap();

    // The first plan: three creates, exit code 2.
    let out = cli(
        home,
        base,
        Some(&token),
        &["plan", "-f", dir_arg, "--detailed-exitcode"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    for line in [
        "+ create dev/sandbox",
        "+ create prod/checkout-api",
        "+ create prod/search",
        "+ member alice@example.com (owner)",
        "Plan: 3 to create, 0 to change, 0 to archive.",
    ] {
        assert!(stdout.contains(line), "missing '{line}' in:\n{stdout}");
    }

    let out = cli(home, base, Some(&token), &["apply", "-f", dir_arg]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Apply complete: 3 change(s) made."),
        "{stdout}"
    );
    let list = projects(base, &token).await;
    assert_eq!(list.len(), 3);
    let checkout = find(&list, "prod", "checkout-api").clone();
    assert_eq!(checkout["tags"]["CostCenter"], "cc-1234");
    assert_eq!(checkout["monthly_budget_usd"], 500.0);
    assert_eq!(find(&list, "dev", "sandbox")["rate_limits"]["rpm"], 60);
    let id = checkout["id"].as_str().unwrap().to_owned();
    let (_, members) = api(
        base,
        &token,
        reqwest::Method::GET,
        &format!("/projects/{id}/members"),
        None,
    )
    .await;
    let roles: Vec<(String, String)> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["subject"].as_str().unwrap().into(),
                m["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("alice@example.com".into(), "owner".into()),
            ("dev@example.com".into(), "developer".into())
        ]
    );

    // Twice changes nothing: plan exits 0, apply writes nothing (generations unchanged).
    let out = cli(
        home,
        base,
        Some(&token),
        &["plan", "-f", dir_arg, "--detailed-exitcode"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("No changes"));
    let out = cli(home, base, Some(&token), &["apply", "-f", dir_arg]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let again = projects(base, &token).await;
    for p in &again {
        assert_eq!(
            p["generation"], 1,
            "apply wrote to an unchanged project: {p}"
        );
    }

    // A change field by field: a tag, the budget, a member removed.
    let edited = PROD
        .replace(
            "CostCenter: cc-1234",
            "CostCenter: cc-9999\n      Owner: payments",
        )
        .replace("monthly_budget_usd: 500", "monthly_budget_usd: 750")
        .replace("      dev@example.com: developer\n", "");
    std::fs::write(files.join("prod/projects.yaml"), &edited).unwrap();
    let out = cli(home, base, Some(&token), &["plan", "-f", dir_arg]).await;
    let (stdout, _) = text(&out);
    for line in [
        "~ change prod/checkout-api",
        "tags.CostCenter: \"cc-1234\" -> \"cc-9999\"",
        "tags.Owner: (none) -> \"payments\"",
        "monthly_budget_usd: 500.0 -> 750.0",
        "- member dev@example.com: developer -> (none)",
        "Plan: 0 to create, 1 to change, 0 to archive.",
    ] {
        assert!(stdout.contains(line), "missing '{line}' in:\n{stdout}");
    }
    let out = cli(home, base, Some(&token), &["apply", "-f", dir_arg]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let (_, now) = api(
        base,
        &token,
        reqwest::Method::GET,
        &format!("/projects/{id}"),
        None,
    )
    .await;
    assert_eq!(
        now["tags"],
        json!({"CostCenter": "cc-9999", "Owner": "payments"})
    );
    assert_eq!(now["monthly_budget_usd"], 750.0);
    let (_, members) = api(
        base,
        &token,
        reqwest::Method::GET,
        &format!("/projects/{id}/members"),
        None,
    )
    .await;
    assert_eq!(members["items"].as_array().unwrap().len(), 1);

    // A project no file declares: left alone, archived only with --prune.
    let (status, stray) = api(
        base,
        &token,
        reqwest::Method::POST,
        "/projects",
        Some(json!({
        "name": "stray", "environment": "prod", "team": "misc", "region": "us-east-1",
        "allowed_models": ["openai.gpt-oss-20b"]})),
    )
    .await;
    assert_eq!(status, 201);
    let out = cli(
        home,
        base,
        Some(&token),
        &["plan", "-f", dir_arg, "--detailed-exitcode"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = cli(
        home,
        base,
        Some(&token),
        &["plan", "-f", dir_arg, "--prune", "--detailed-exitcode"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).0.contains("- archive prod/stray"),
        "{:?}",
        text(&out)
    );
    let out = cli(
        home,
        base,
        Some(&token),
        &["apply", "-f", dir_arg, "--prune"],
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let (_, stray) = api(
        base,
        &token,
        reqwest::Method::GET,
        &format!("/projects/{}", stray["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(stray["status"], "archived");

    // A saved plan meets a concurrent edit: nothing of it is applied.
    let both = edited
        .replace("monthly_budget_usd: 750", "monthly_budget_usd: 900")
        .replace(
            "allowed_models: [openai.gpt-oss-20b]",
            "allowed_models: [openai.gpt-oss-20b, openai.gpt-oss-120b]",
        );
    std::fs::write(files.join("prod/projects.yaml"), &both).unwrap();
    let saved = home.join("plan.json");
    let out = cli(
        home,
        base,
        Some(&token),
        &["plan", "-f", dir_arg, "--out", saved.to_str().unwrap()],
    )
    .await;
    assert!(
        text(&out)
            .0
            .contains("Plan: 0 to create, 2 to change, 0 to archive."),
        "{:?}",
        text(&out)
    );
    let search_id = find(&projects(base, &token).await, "prod", "search")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = api(
        base,
        &token,
        reqwest::Method::PATCH,
        &format!("/projects/{search_id}"),
        Some(json!({"display_name": "Search (edited by hand)"})),
    )
    .await;
    assert_eq!(status, 200);
    let out = cli(
        home,
        base,
        Some(&token),
        &["apply", "--plan", saved.to_str().unwrap()],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("nothing was applied: prod/search changed since the plan"),
        "{stderr}"
    );
    let (_, now) = api(
        base,
        &token,
        reqwest::Method::GET,
        &format!("/projects/{id}"),
        None,
    )
    .await;
    assert_eq!(
        now["monthly_budget_usd"], 750.0,
        "checkout-api was half-applied"
    );
    // A fresh plan then applies both.
    let out = cli(home, base, Some(&token), &["apply", "-f", dir_arg]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let (_, now) = api(
        base,
        &token,
        reqwest::Method::GET,
        &format!("/projects/{search_id}"),
        None,
    )
    .await;
    assert_eq!(
        now["allowed_models"],
        json!(["openai.gpt-oss-20b", "openai.gpt-oss-120b"])
    );
    assert_eq!(
        now["display_name"], "search",
        "the file's display name (its default) wins"
    );

    // Bad files: every problem with file, line and field; nothing applied.
    std::fs::write(
        files.join("zz-bad.yaml"),
        "\
name: broken
environment: prod
team: payments
region: us-east-1
allowed_models:
  - openai.no-such-model
monthly_budget_usd: -5
",
    )
    .unwrap();
    let before = projects(base, &token).await.len();
    let out = cli(home, base, Some(&token), &["apply", "-f", dir_arg]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("zz-bad.yaml:7: monthly_budget_usd: "),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was applied"), "{stderr}");
    std::fs::write(
        files.join("zz-bad.yaml"),
        DEV.replace("sandbox", "broken").replace(
            "[openai.gpt-oss-20b]",
            "[openai.gpt-oss-20b, openai.no-such-model]",
        ),
    )
    .unwrap();
    let out = cli(home, base, Some(&token), &["apply", "-f", dir_arg]).await;
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("zz-bad.yaml:5: allowed_models[1]: unknown model 'openai.no-such-model'"),
        "{stderr}"
    );
    assert_eq!(projects(base, &token).await.len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_signs_in_with_a_token_and_manages_keys_as_rbac_allows() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mantle = FakeMantle::start().await;
    let server = serve(dir.path(), &db.url, &mantle, 5).await;
    let admin = admin_token(dir.path());
    let (base, home) = (server.base.as_str(), dir.path());
    let mine = create(
        base,
        &admin,
        &json!({"name": "checkout-api", "environment": "prod", "team": "payments",
        "region": "us-east-1", "allowed_models": ["openai.gpt-oss-120b"]}),
    )
    .await;
    create(
        base,
        &admin,
        &json!({"name": "other", "environment": "prod", "team": "payments",
        "region": "us-east-1", "allowed_models": ["openai.gpt-oss-120b"]}),
    )
    .await;
    let (status, _) = api(
        base,
        &admin,
        reqwest::Method::PUT,
        &format!("/projects/{mine}/members/dev@example.com"),
        Some(json!({"role": "developer"})),
    )
    .await;
    assert!(status == 200 || status == 201);
    let minted = run_to_end(
        &[
            "token",
            "mint",
            "--subject",
            "dev@example.com",
            "--role",
            "developer",
        ],
        home,
        &db.url,
        &mantle,
    )
    .await;
    let dev_token = String::from_utf8_lossy(&minted.stdout).trim().to_owned();
    assert!(dev_token.starts_with("eyJ"), "{:?}", text(&minted));

    // `login --token-stdin` checks the token and stores it, readable by its owner only.
    let out = login_with(
        home,
        &["--url", base, "--token-stdin"],
        &format!("{dev_token}\n"),
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).1.contains("Logged in to"), "{:?}", text(&out));
    let stored = home.join("strata/credentials.toml");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // From here on the stored login is used (no STRATA_TOKEN).
    let out = cli(home, base, None, &["whoami"]).await;
    assert!(
        text(&out).0.starts_with("dev@example.com (developer)"),
        "{:?}",
        text(&out)
    );
    let out = cli(home, base, None, &["projects", "list"]).await;
    let (stdout, _) = text(&out);
    assert!(stdout.starts_with("NAME"), "{stdout}");
    assert!(
        stdout.contains("checkout-api") && !stdout.contains("other"),
        "a developer sees its projects only:\n{stdout}"
    );

    let out = cli(
        home,
        base,
        None,
        &[
            "keys",
            "create",
            "--project",
            "prod/checkout-api",
            "--name",
            "laptop",
            "--expires-in",
            "7d",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let secret = stdout.trim();
    assert!(
        secret.starts_with("sk-strata-") && stdout.lines().count() == 1,
        "{stdout}"
    );
    assert!(!stderr.contains(secret), "the secret goes to stdout only");
    let out = cli(
        home,
        base,
        None,
        &["keys", "list", "--project", "checkout-api", "-o", "json"],
    )
    .await;
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key_id = keys[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(keys[0]["name"], "laptop");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(secret),
        "list never shows a secret"
    );
    let out = cli(
        home,
        base,
        None,
        &["keys", "revoke", "--project", "checkout-api", &key_id],
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = cli(
        home,
        base,
        None,
        &["keys", "list", "--project", "checkout-api"],
    )
    .await;
    assert!(text(&out).0.contains("revoked"), "{:?}", text(&out));

    // RBAC as the API has it, its message shown: another project, and applying files.
    let out = cli(
        home,
        base,
        None,
        &["keys", "create", "--project", "other", "--name", "x"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("no active project 'other'"),
        "{:?}",
        text(&out)
    );
    std::fs::write(home.join("p.yaml"), DEV).unwrap();
    let out = cli(
        home,
        base,
        None,
        &["apply", "-f", home.join("p.yaml").to_str().unwrap()],
    )
    .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("(403 forbidden)"), "{stderr}");
    // Details of a validation error reach the terminal, not just its summary.
    let out = cli(
        home,
        base,
        None,
        &[
            "keys",
            "create",
            "--project",
            "checkout-api",
            "--name",
            "y",
            "--models",
            "openai.gpt-oss-20b",
        ],
    )
    .await;
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("(422 validation_failed)") && stderr.contains("\n  models"),
        "{stderr}"
    );

    let out = cli(home, base, None, &["logout"]).await;
    assert!(out.status.success());
    assert!(!stored.exists());
    let out = cli(home, base, None, &["whoami"]).await;
    assert!(text(&out).1.contains("no token for"), "{:?}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_the_identity_providers_device_flow() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mantle = FakeMantle::start().await;
    let idp = FakeIdp::start().await;
    let server = serve_with_idp(dir.path(), &db, &mantle, &idp).await;
    let home = dir.path();

    for approve in [false, true] {
        let mut login = std::process::Command::new(STRATA);
        login
            .args(["login", "--url", &server.base])
            .env("XDG_CONFIG_HOME", home)
            .env("HOME", home)
            .env_remove("STRATA_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = login.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        // The code the CLI shows, read off its first line.
        let first = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(stderr).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            (
                first,
                lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"),
            )
        });
        // Let it poll while the user has not decided.
        tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
        let polls = idp.device_polls();
        assert!(polls >= 1, "the CLI did not poll");
        let code = {
            // "Open …?user_code=WDJB-0001" — the approve step needs the code only.
            let mut found = None;
            for n in 1..=10 {
                let candidate = format!("WDJB-{n:04}");
                if idp.decide_device(
                    &candidate,
                    approve.then_some(("carol@example.com", &["strata-platform-admins"][..])),
                ) {
                    found = Some(candidate);
                    break;
                }
            }
            found.expect("no device sign-in pending")
        };
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let (first, rest) = first.await.unwrap();
        assert!(first.contains(&code), "the CLI shows the code: {first}");
        if approve {
            assert!(out.status.success(), "{first}\n{rest}");
            assert!(
                rest.contains("Logged in to")
                    && rest.contains("carol@example.com (platform-admin)"),
                "{rest}"
            );
        } else {
            assert!(!out.status.success());
            assert!(rest.contains("the sign-in was denied"), "{rest}");
            assert!(!home.join("strata/credentials.toml").exists());
        }
    }
    let out = cli(home, &server.base, None, &["whoami"]).await;
    assert!(
        text(&out)
            .0
            .starts_with("carol@example.com (platform-admin)"),
        "{:?}",
        text(&out)
    );
    assert_eq!(idp.refreshes(), 0, "a fresh token is used as it is");

    // A token about to expire is renewed with the refresh token before the call: trade
    // the stored refresh token by hand for a short-lived token, as if time had passed.
    idp.set_token_lifetime(30);
    let stored = home.join("strata/credentials.toml");
    let creds = std::fs::read_to_string(&stored).unwrap();
    let line = |prefix: &str| {
        creds
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap()
            .to_owned()
    };
    let (token_line, refresh_line) = (line("token = "), line("refresh_token = "));
    let renewed: Value = reqwest::Client::new()
        .post(format!("{}token", idp.issuer))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "strata-cli"),
            ("refresh_token", refresh_line.split('"').nth(1).unwrap()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let short_lived = creds
        .replace(
            &token_line,
            &format!("token = \"{}\"", renewed["access_token"].as_str().unwrap()),
        )
        .replace(
            &refresh_line,
            &format!(
                "refresh_token = \"{}\"",
                renewed["refresh_token"].as_str().unwrap()
            ),
        );
    std::fs::write(&stored, &short_lived).unwrap();
    let out = cli(home, &server.base, None, &["whoami"]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(idp.refreshes(), 2, "renewed before the call");
    let after = std::fs::read_to_string(&stored).unwrap();
    assert_ne!(
        after, short_lived,
        "the renewed token and rotated refresh token are stored"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// `deploy/examples/projects-repo` applies as its README says, with the very arguments
/// its CI workflow passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_projects_repository_plans_and_applies_as_its_workflow_does() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/projects-repo");
    let workflow = std::fs::read_to_string(repo.join(".github/workflows/strata.yaml")).unwrap();
    let args_of = |command: &str| -> Vec<String> {
        let line = workflow
            .lines()
            .find(|l| l.contains(&format!("vars.STRATA_IMAGE }}}}\" {command} ")))
            .unwrap_or_else(|| panic!("the workflow runs no `{command}`"));
        let args = line.split("}}\" ").nth(1).unwrap();
        let args = args.split(" > ").next().unwrap();
        args.split_whitespace()
            .map(|a| a.replace("/projects", repo.join("projects").to_str().unwrap()))
            .collect()
    };
    let (plan, apply) = (args_of("plan"), args_of("apply"));
    assert!(plan.contains(&"--detailed-exitcode".to_owned()), "{plan:?}");

    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mantle = FakeMantle::start().await;
    let server = serve(dir.path(), &db.url, &mantle, 5).await;
    let token = admin_token(dir.path());
    let out = cli(dir.path(), &server.base, Some(&token), &strs(&plan)).await;
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(
        text(&out)
            .0
            .contains("Plan: 7 to create, 0 to change, 0 to archive."),
        "{:?}",
        text(&out)
    );
    let out = cli(dir.path(), &server.base, Some(&token), &strs(&apply)).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = cli(dir.path(), &server.base, Some(&token), &strs(&plan)).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let list = projects(&server.base, &token).await;
    assert_eq!(find(&list, "prod", "search")["data_retention"], "standard");
    let names: Vec<String> = budgets(&server.base, &token)
        .await
        .iter()
        .filter_map(|b| b["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(names, ["checkout-api-daily", "payments-weekly"]);
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// An identity provider without the device grant: `login` says so and takes a pasted
/// token from it instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_falls_back_to_a_pasted_token_without_the_device_grant() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mantle = FakeMantle::start().await;
    let idp = FakeIdp::start().await;
    idp.hide_device_flow();
    let server = serve_with_idp(dir.path(), &db, &mantle, &idp).await;
    let home = dir.path();
    let token = idp.token(json!({"sub": "dana@example.com", "groups": ["strata-finance"]}));
    let out = login_with(home, &["--url", &server.base], &format!("{token}\n")).await;
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("offers no device authorization endpoint; paste a token"),
        "{stderr}"
    );
    let out = cli(home, &server.base, None, &["whoami"]).await;
    assert!(
        text(&out).0.starts_with("dana@example.com (finance)"),
        "{:?}",
        text(&out)
    );
}

const BUDGETS: &str = "\
budgets:
  - name: payments-weekly
    scope: team
    target: payments
    period: week
    amount_usd: 250
    enforcement: hard
  - name: checkout-daily
    scope: project
    target: prod/checkout-api
    period: day
    amount_usd: 20
";

async fn budgets(base: &str, token: &str) -> Vec<Value> {
    let (_, list) = api(base, token, reqwest::Method::GET, "/budgets", None).await;
    list["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_as_code_beside_the_projects_they_name() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mantle = FakeMantle::start().await;
    let server = serve(dir.path(), &db.url, &mantle, 5).await;
    let token = admin_token(dir.path());
    let (base, home) = (server.base.as_str(), dir.path());
    let files = home.join("repo");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("projects.yaml"), PROD).unwrap();
    std::fs::write(files.join("budgets.yaml"), BUDGETS).unwrap();
    let dir_arg = files.to_str().unwrap();

    // A budget naming a project this apply creates: planned, then given its id.
    let out = cli(home, base, Some(&token), &["plan", "-f", dir_arg]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for line in [
        "+ create budget payments-weekly",
        "    team payments, per week: $250.00 (hard)",
        "+ create budget checkout-daily",
        "    project prod/checkout-api, per day: $20.00 (soft)",
        "Plan: 4 to create, 0 to change, 0 to archive.",
    ] {
        assert!(stdout.contains(line), "missing '{line}' in:\n{stdout}");
    }
    let out = cli(home, base, Some(&token), &["apply", "-f", dir_arg]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let checkout = find(&projects(base, &token).await, "prod", "checkout-api").clone();
    let mut made: Vec<(String, String, String)> = budgets(base, &token)
        .await
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().into(),
                b["target"].as_str().unwrap().into(),
                b["enforcement"].as_str().unwrap().into(),
            )
        })
        .collect();
    made.sort();
    assert_eq!(
        made,
        [
            (
                "checkout-daily".into(),
                checkout["id"].as_str().unwrap().into(),
                "soft".into()
            ),
            ("payments-weekly".into(), "payments".into(), "hard".into()),
        ]
    );
    let out = cli(
        home,
        base,
        Some(&token),
        &["plan", "-f", dir_arg, "--detailed-exitcode"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    // A change in place; one made on the pages stays unless --prune-budgets.
    std::fs::write(
        files.join("budgets.yaml"),
        BUDGETS.replace("amount_usd: 250", "amount_usd: 300"),
    )
    .unwrap();
    let (status, _) = api(
        base,
        &token,
        reqwest::Method::POST,
        "/budgets",
        Some(
            json!({"name": "finance-made", "scope": "environment", "target": "prod",
                    "period": "month", "amount_usd": 1000}),
        ),
    )
    .await;
    assert_eq!(status, 201);
    let out = cli(home, base, Some(&token), &["plan", "-f", dir_arg]).await;
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("~ change budget payments-weekly\n    amount_usd: 250.0 -> 300"),
        "{stdout}"
    );
    assert!(!stdout.contains("finance-made"), "{stdout}");
    // A saved plan meets a budget edited since: nothing is applied.
    let saved = home.join("plan.json");
    let out = cli(
        home,
        base,
        Some(&token),
        &["plan", "-f", dir_arg, "--out", saved.to_str().unwrap()],
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let id = |list: &[Value], name: &str| {
        list.iter()
            .find(|b| b["name"] == name)
            .map(|b| b["id"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let weekly = id(&budgets(base, &token).await, "payments-weekly");
    let (status, _) = api(
        base,
        &token,
        reqwest::Method::PATCH,
        &format!("/budgets/{weekly}"),
        Some(json!({"enforcement": "soft"})),
    )
    .await;
    assert_eq!(status, 200);
    let out = cli(
        home,
        base,
        Some(&token),
        &["apply", "--plan", saved.to_str().unwrap()],
    )
    .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("budget payments-weekly changed since the plan"),
        "{stderr}"
    );
    let now = budgets(base, &token).await;
    let weekly_now = now.iter().find(|b| b["name"] == "payments-weekly").unwrap();
    assert_eq!(weekly_now["amount_usd"], 250.0, "nothing applied");

    let out = cli(
        home,
        base,
        Some(&token),
        &["apply", "-f", dir_arg, "--prune-budgets"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("- delete budget finance-made"), "{stdout}");
    assert!(
        stdout.contains("enforcement: \"soft\" -> \"hard\""),
        "{stdout}"
    );
    let now = budgets(base, &token).await;
    let names: Vec<&str> = now.iter().filter_map(|b| b["name"].as_str()).collect();
    assert_eq!(names, ["checkout-daily", "payments-weekly"]);
    let weekly_now = now.iter().find(|b| b["name"] == "payments-weekly").unwrap();
    assert_eq!(
        (&weekly_now["amount_usd"], &weekly_now["enforcement"]),
        (&json!(300.0), &json!("hard"))
    );

    // A budget naming a project that exists nowhere: the file's line, nothing sent.
    std::fs::write(
        files.join("budgets.yaml"),
        BUDGETS.replace("prod/checkout-api", "prod/ghost"),
    )
    .unwrap();
    let out = cli(home, base, Some(&token), &["apply", "-f", dir_arg]).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("budgets.yaml:10: target: no active project prod/ghost"),
        "{stderr}"
    );
}
