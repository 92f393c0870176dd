//! The reconciler as separate processes of the real binary, on one database, against
//! moto and the fake Mantle: killed mid-pass (SIGKILL) it converges on the next run
//! with no orphan and no duplicate; two replicas never reconcile one project twice.

// A test crate: its helpers may unwrap as its tests do (clippy.toml covers only
// `#[test]` functions and `#[cfg(test)]` modules).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use strata_testkit::{Backend, FakeMantle, TestDb, project_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciler_killed_mid_pass_converges_on_the_next_run() {
    for kill_after_creates in [1, 5, 9] {
        let db = TestDb::of(Backend::Postgres).await;
        let dir = tempfile::tempdir().unwrap();
        let mantle = FakeMantle::start().await;
        mantle.delay_creates(Duration::from_millis(150));
        let server = serve(dir.path(), &db.url, &mantle, 5).await;
        let token = admin_token(dir.path());
        let mut ids = Vec::new();
        for i in 0..12 {
            ids.push(create(&server.base, &token, &project_body(&format!("kill-{i}"))).await);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while mantle.calls("CreateProject") < kill_after_creates {
            assert!(Instant::now() < deadline, "the loop made no Mantle project");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(server); // SIGKILL, mid-pass
        mantle.delay_creates(Duration::ZERO);
        // The dead replica's leases expire (5 s); then one pass converges.
        tokio::time::sleep(Duration::from_millis(5_500)).await;
        let out = run_to_end(&["reconcile"], dir.path(), &db.url, &mantle).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "kill after {kill_after_creates}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("12 project(s): 12 in sync, 0 failed, 0 skipped"),
            "{stdout}"
        );
        let server = serve(dir.path(), &db.url, &mantle, 5).await;
        let mut projects = Vec::new();
        for id in &ids {
            projects.push(observed(&server.base, &token, id).await);
        }
        assert_converged(&mantle, &ids, &projects).await;
        assert_eq!(
            mantle.calls("CreateProject"),
            12,
            "kill after {kill_after_creates}: a create was repeated"
        );
        // And the next pass writes nothing.
        drop(server);
        let out = run_to_end(&["reconcile"], dir.path(), &db.url, &mantle).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("(0 mutating"), "{stdout}");
        // The dry run agrees: nothing to do.
        let out = run_to_end(&["reconcile", "--dry-run"], dir.path(), &db.url, &mantle).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert_eq!(
            stdout.matches("in sync: no changes").count(),
            12,
            "{stdout}"
        );
        assert!(stdout.contains("(0 mutating"), "{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_reconcile_each_project_once() {
    let db = TestDb::of(Backend::Postgres).await;
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let mantle = FakeMantle::start().await;
    mantle.delay_creates(Duration::from_millis(50));
    let a = serve(dir_a.path(), &db.url, &mantle, 30).await;
    let b = serve(dir_b.path(), &db.url, &mantle, 30).await;
    let token = admin_token(dir_a.path());
    let mut ids = Vec::new();
    for i in 0..30 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        ids.push(create(base, &token, &project_body(&format!("pair-{i}"))).await);
    }
    wait_all_observed(&a.base, &token, &ids, Duration::from_secs(60)).await;
    assert_eq!(
        mantle.calls("CreateProject"),
        30,
        "each project's Mantle project made once"
    );
    let mut projects = Vec::new();
    for id in &ids {
        projects.push(observed(&b.base, &token, id).await);
    }
    assert_converged(&mantle, &ids, &projects).await;
    // A change through replica B is applied once, by whichever replica claims it.
    let r = reqwest::Client::new()
        .patch(format!("{}/api/v1/projects/{}", b.base, ids[0]))
        .bearer_auth(&token)
        .json(&json!({"tags": {"CostCenter": "cc-2"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while observed(&a.base, &token, &ids[0]).await["observed_generation"] != 2 {
        assert!(Instant::now() < deadline, "the change was not reconciled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        mantle.calls("UpdateProject"),
        1,
        "one replica applied the change"
    );
}
