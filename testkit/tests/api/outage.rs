//! A database outage answers 503 (requests and /readyz), writes nothing half-done,
//! and the service recovers on its own when the database returns. Runs on Postgres
//! in both suite runs: a file-backed SQLite cannot go away underneath the process.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use strata_testkit::{Backend, FaultProxy, TestApp, TestDb, project_body};

fn host_port(url: &str) -> SocketAddr {
    let rest = url.split("://").nth(1).unwrap_or_default();
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let host = host.replace("localhost", "127.0.0.1");
    host.parse()
        .unwrap_or_else(|e| panic!("cannot parse Postgres address '{host}': {e}"))
}

#[tokio::test]
async fn database_outage_gives_503_and_recovers() {
    let mut db = TestDb::of(Backend::Postgres).await;
    let target = host_port(&db.url);
    let proxy = FaultProxy::start(target).await;
    db.url = db
        .url
        .replacen(&target.to_string(), &proxy.addr.to_string(), 1)
        .replacen("localhost:5432", &proxy.addr.to_string(), 1);
    let app = TestApp::builder().db(db).spawn().await;
    app.create_project(&project_body("before")).await;

    proxy.cut();
    let r = app.get("/api/v1/projects", &app.admin).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
        "{}",
        r.body
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    let r = app
        .post("/api/v1/projects", &app.admin, &project_body("during"))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    let r = app.get("/readyz", "").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
    );
    assert_eq!(
        app.get("/healthz", "").await.status,
        StatusCode::OK,
        "liveness does not depend on the database"
    );

    proxy.restore();
    let started = Instant::now();
    loop {
        let r = app.get("/readyz", "").await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not ready 20 s after the database returned: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let list = app.get("/api/v1/projects", &app.admin).await;
    assert_eq!(list.status, StatusCode::OK);
    let names: Vec<&str> = list.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["before"],
        "the write refused during the outage left nothing behind"
    );
    app.create_project(&project_body("after")).await;
}
