use reqwest::StatusCode;
use serde_json::json;
use strata_core::config::AuthConfig;
use strata_testkit::{FakeIdp, TestApp};

#[tokio::test]
async fn bad_tokens_are_refused_without_echoing_them() {
    let app = TestApp::spawn().await;
    let r = app.get("/api/v1/projects", "").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));

    let expired = app
        .state
        .local_issuer
        .as_ref()
        .map(|i| {
            i.mint(
                "admin",
                &["platform-admin".into()],
                -3600,
                &strata_core::clock::SystemClock,
            )
        })
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut tampered = app.admin.clone();
    tampered.pop();
    tampered.push(if app.admin.ends_with('A') { 'B' } else { 'A' });
    let other_app = TestApp::spawn().await; // another database, another issuer key
    for (name, token) in [
        ("garbage", "not.a.jwt".to_owned()),
        ("expired", expired),
        ("tampered", tampered),
        ("foreign key", other_app.admin.clone()),
    ] {
        let r = app.get("/api/v1/projects", &token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}: {}", r.body);
        assert!(
            !r.body.to_string().contains(&token),
            "{name}: the token was echoed"
        );
    }
    let r = app
        .send(
            reqwest::Method::GET,
            "/api/v1/projects",
            "",
            None,
            &[("authorization", "Basic YTpi")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn oidc_tokens_map_groups_to_roles() {
    let idp = FakeIdp::start().await;
    let auth = AuthConfig {
        oidc_issuer: Some(idp.issuer.clone()),
        oidc_jwks_url: Some(idp.jwks_url.clone()),
        oidc_audience: Some("strata-prod".into()),
        oidc_groups_claim: "cognito:groups".into(),
        ..AuthConfig::default()
    };
    let app = TestApp::builder().auth(auth).spawn().await;

    let fiona = idp.token(json!({"sub": "fiona", "aud": "strata-prod", "cognito:groups": ["strata-finance", "unrelated"]}));
    let me = app.get("/api/v1/me", &fiona).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["subject"], "fiona");
    assert_eq!(me.body["roles"], json!(["finance"]));
    assert_eq!(
        app.get("/api/v1/projects", &fiona).await.status,
        StatusCode::OK
    );
    let r = app
        .post(
            "/api/v1/projects",
            &fiona,
            &strata_testkit::project_body("nope"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let admin = idp.token(
        json!({"sub": "pat", "aud": "strata-prod", "cognito:groups": ["strata-platform-admins"]}),
    );
    app.post(
        "/api/v1/projects",
        &admin,
        &strata_testkit::project_body("via-oidc"),
    )
    .await;
    let audit = app.get("/api/v1/audit?actor=pat", &admin).await;
    assert_eq!(
        audit.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        audit.body
    );

    let no_groups = idp.token(json!({"sub": "ghost", "aud": "strata-prod"}));
    assert_eq!(
        app.get("/api/v1/projects", &no_groups).await.status,
        StatusCode::FORBIDDEN
    );
    for (name, token) in [
        ("wrong audience", idp.token(json!({"aud": "someone-else", "cognito:groups": ["strata-finance"]}))),
        ("expired", idp.token(json!({"aud": "strata-prod", "exp": 1_000_000, "cognito:groups": ["strata-finance"]}))),
        ("wrong issuer", idp.token(json!({"aud": "strata-prod", "iss": "https://evil.example/"}))),
    ] {
        assert_eq!(app.get("/api/v1/projects", &token).await.status, StatusCode::UNAUTHORIZED, "{name}");
    }
    // The local issuer still works alongside OIDC.
    assert_eq!(
        app.get("/api/v1/projects", &app.admin).await.status,
        StatusCode::OK
    );
}

/// An identity provider whose keys cannot be fetched is an outage (503, retry), not
/// a bad token (401): clients must not throw their tokens away over it.
#[tokio::test]
async fn an_unreachable_identity_provider_is_a_503_not_a_401() {
    let idp = FakeIdp::start().await;
    // Nothing listens there: bind a port, then free it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let auth = AuthConfig {
        oidc_issuer: Some(idp.issuer.clone()),
        oidc_jwks_url: Some(format!("http://{closed}/jwks")),
        oidc_audience: Some("strata-prod".into()),
        oidc_groups_claim: "cognito:groups".into(),
        ..AuthConfig::default()
    };
    let app = TestApp::builder().auth(auth).spawn().await;
    let token = idp
        .token(json!({"sub": "fiona", "aud": "strata-prod", "cognito:groups": ["strata-finance"]}));
    // The second ask falls within the refetch interval: it must not read as "no such key".
    for attempt in ["first", "within the refetch interval"] {
        let r = app.get("/api/v1/me", &token).await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{attempt}: {}",
            r.body
        );
        assert_eq!(r.code(), "identity_provider_unavailable", "{attempt}");
    }
    // Strata's own tokens do not depend on the provider.
    assert_eq!(
        app.get("/api/v1/me", &app.admin).await.status,
        StatusCode::OK
    );
}

/// `GET /api/v1/auth/cli` tells `strata login` how to sign in, without a token; without
/// a CLI client it says so (404), and the CLI falls back to a pasted token.
#[tokio::test]
async fn the_cli_sign_in_is_published_when_configured() {
    let app = TestApp::spawn().await;
    let r = app.get("/api/v1/auth/cli", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["error"]["code"], "device_login_not_configured");

    let idp = FakeIdp::start().await;
    let auth = AuthConfig {
        oidc_issuer: Some(idp.issuer.clone()),
        oidc_jwks_url: Some(idp.jwks_url.clone()),
        oidc_cli_client_id: Some("strata-cli".into()),
        oidc_cli_token: "id_token".into(),
        ..AuthConfig::default()
    };
    let app = TestApp::builder().auth(auth).spawn().await;
    let r = app.get("/api/v1/auth/cli", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"issuer": idp.issuer, "client_id": "strata-cli",
               "scopes": "openid profile email", "token": "id_token"})
    );
}
