use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Args};
use strata_api::{App, HttpConfig, build_router};
use strata_core::clock::{Clock, SystemClock};
use strata_core::config::{AuthConfig, DatabaseConfig, KeysConfig, ProxyCredentialConfig};
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN_TTL_SECS: i64 = 30 * 86_400;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address the control plane listens on.
    #[arg(long, env = "STRATA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Apply pending migrations at start (turn off when a migration job runs them).
    #[arg(long = "migrate-on-start", env = "STRATA_MIGRATE_ON_START", default_value_t = true, action = ArgAction::Set)]
    migrate_on_start: bool,
    /// Where the first start writes a platform-admin token (mode 0600).
    #[arg(
        long = "admin-token-file",
        env = "STRATA_ADMIN_TOKEN_FILE",
        default_value = "strata-admin.token"
    )]
    admin_token_file: PathBuf,
    #[command(flatten)]
    database: DatabaseConfig,
    #[command(flatten)]
    auth: AuthConfig,
    #[command(flatten)]
    keys: KeysConfig,
    #[command(flatten)]
    proxy: ProxyCredentialConfig,
    #[command(flatten)]
    http: HttpConfig,
    #[command(flatten)]
    reconciler: strata_reconciler::ReconcilerConfig,
    #[command(flatten)]
    costs: strata_costs::CostConfig,
    /// Also run the routing proxy in this process (on --proxy-listen), so one command
    /// gives the whole system; turn off where proxies run as their own replicas.
    #[arg(long = "serve-proxy", env = "STRATA_SERVE_PROXY", default_value_t = true, action = ArgAction::Set)]
    serve_proxy: bool,
    #[command(flatten)]
    proxy_server: strata_proxy::ProxyConfig,
    /// Days the proxy's per-minute usage is kept (per-day totals, which the cost
    /// pages read, are kept for good); 0 keeps minutes for good.
    #[arg(
        long = "usage-minutes-retention-days",
        env = "STRATA_USAGE_MINUTES_RETENTION_DAYS",
        default_value_t = 400
    )]
    usage_minutes_retention_days: u32,
}

fn write_secret_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // The mode applies only to new files; make sure an existing one is private too.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    Ok(())
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let store = super::connect(&args.database).await?;
    if args.migrate_on_start {
        strata_migrations::up(store.db())
            .await
            .context("applying migrations")?;
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let run_loop = args.reconciler.enabled;
    let reconciler =
        super::reconcile::reconciler(store.clone(), args.reconciler.clone(), clock.clone()).await;
    let (state, first_start) = App::build(
        store,
        clock.clone(),
        &args.auth,
        &args.keys,
        &args.proxy,
        args.http.clone(),
        reconciler.clone(),
    )
    .await?;

    if first_start && let Some(issuer) = &state.local_issuer {
        let token = issuer.mint(
            "admin",
            &["platform-admin".to_owned()],
            ADMIN_TOKEN_TTL_SECS,
            clock.as_ref(),
        )?;
        write_secret_file(&args.admin_token_file, &token)?;
        // Not println!: it panics when stdout is a closed pipe (a supervisor or a test
        // that stopped reading after the token), which would kill the server.
        let message = format!(
            "\nFirst start: a platform-admin token (valid 30 days) is in {} (mode 0600):\n\n{token}\n\n\
             Try:  curl -H \"Authorization: Bearer $(cat {})\" http://{}/api/v1/projects\n\
             Pages:  http://{}/ui (sign in with that token)\n\
             More tokens:  strata token mint --subject alice --role developer\n",
            args.admin_token_file.display(),
            args.admin_token_file.display(),
            args.listen,
            args.listen
        );
        if let Err(e) = std::io::Write::write_all(&mut std::io::stdout(), message.as_bytes()) {
            tracing::warn!(error.cause = %e, "cannot print the first-start message (the token is in the file)");
        }
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(super::shutdown_signal(shutdown.clone()));
    tokio::spawn(housekeeping(
        state.clone(),
        args.usage_minutes_retention_days,
        shutdown.clone(),
    ));
    let cost_loop = match (
        &reconciler.aws().unavailable,
        args.costs.refresh_interval_secs,
    ) {
        (_, 0) => None,
        (Some(why), _) => {
            tracing::info!(reason = %why, "scheduled cost refresh off: AWS is not configured");
            None
        }
        (None, secs) => Some(tokio::spawn(strata_costs::run(
            state.services.clone(),
            reconciler.aws().cost_usage.clone(),
            args.costs.settings(),
            Duration::from_secs(secs),
            shutdown.clone(),
        ))),
    };
    if args.http.notify.interval_secs > 0 {
        tokio::spawn(deliver_notifications(
            state.clone(),
            strata_core::services::DeliveryPolicy::from_config(&args.http.notify),
            Duration::from_secs(args.http.notify.interval_secs),
            shutdown.clone(),
        ));
    }
    let reconcile_loop = run_loop.then(|| tokio::spawn(reconciler.run(shutdown.clone())));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // The embedded proxy stops first (finishing its streams and flushing usage to this
    // control plane), then the control plane.
    let proxy_stopped = CancellationToken::new();
    let proxy_task = if args.serve_proxy {
        let proxy_listen = args.proxy_server.proxy_listen;
        let proxy = super::proxy::build(
            args.proxy_server.clone(),
            loopback_url(args.listen),
            &args.proxy,
            &args.keys.key_issuer,
            &args.keys.proxy_audience,
            &args.reconciler.mantle_url,
        )
        .await?;
        let proxy_listener = strata_proxy::listen(proxy_listen).with_context(|| format!("cannot listen on {proxy_listen} (the proxy; STRATA_PROXY_LISTEN, or STRATA_SERVE_PROXY=false)"))?;
        tracing::info!(http.listen = %proxy_listen, "strata proxy listening (embedded)");
        let stop = shutdown.clone();
        let stopped = proxy_stopped.clone();
        Some(tokio::spawn(async move {
            if let Err(e) = strata_proxy::serve(proxy_listener, proxy, stop).await {
                tracing::error!(error.cause = %e, "the embedded proxy stopped with an error");
            }
            stopped.cancel();
        }))
    } else {
        proxy_stopped.cancel();
        None
    };
    tracing::info!(
        http.listen = %args.listen,
        database.url = %args.database.redacted_url(),
        auth.local_issuer = args.auth.local_issuer_enabled,
        auth.oidc_issuer = args.auth.oidc_issuer.as_deref().unwrap_or("-"),
        "strata control plane listening"
    );
    let router = build_router(state.clone());
    let stop = shutdown.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            stop.cancelled().await;
            proxy_stopped.cancelled().await;
        })
        .await?;
    if let Some(task) = proxy_task {
        let _ = task.await;
    }
    if let Some(task) = cost_loop {
        // A refresh in flight is cut off; what it had not stored is fetched next time.
        task.abort();
    }
    if let Some(task) = reconcile_loop {
        // A pass in flight finishes its current AWS call; its lease expires if not.
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    state.services.store.clone().close().await.ok();
    tracing::info!("stopped");
    Ok(())
}

/// `http://` + the address, with an unspecified IP (0.0.0.0) replaced by loopback.
fn loopback_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        addr.ip()
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Every `interval`: new notifications fanned out to their destinations, due
/// deliveries sent (leased, so replicas never send one twice); once a minute, the
/// watched-for events (budgets, expiring keys, failing reconciles) recorded first.
async fn deliver_notifications(
    state: strata_api::AppState,
    policy: strata_core::services::DeliveryPolicy,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    let mut last_watch: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if last_watch.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            last_watch = Some(std::time::Instant::now());
            if let Err(e) = state.services.watch_for_events(&policy).await {
                tracing::warn!(error.cause = %e, "watching for notification events failed; will retry");
            }
        }
        match state
            .services
            .deliver_notifications(&state.kek, &state.notify_http, &policy)
            .await
        {
            Ok(r) if r.delivered + r.retrying + r.failed > 0 => tracing::info!(
                notifications.delivered = r.delivered,
                notifications.retrying = r.retrying,
                notifications.failed = r.failed,
                "notification deliveries sent"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error.cause = %e, "a notification delivery pass failed; will retry")
            }
        }
    }
}

/// Hourly: idempotency keys are forgotten after 24 hours, the proxy's usage batch ids
/// after 7 days (it retries a batch within seconds), usage minutes after their
/// retention, Responses API ids after 45 days (Mantle keeps responses about 30). Every replica may run it: the deletes are idempotent.
async fn housekeeping(
    state: strata_api::AppState,
    minutes_retention_days: u32,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let services = &state.services;
        let purges = [
            (
                "idempotency keys",
                services
                    .purge_idempotency_keys(chrono::Duration::hours(24))
                    .await,
            ),
            (
                "usage batch ids",
                services
                    .purge_usage_batches(chrono::Duration::days(7))
                    .await,
            ),
            (
                "response ids",
                services.purge_responses(chrono::Duration::days(45)).await,
            ),
            (
                "usage minutes",
                if minutes_retention_days == 0 {
                    Ok(0)
                } else {
                    services
                        .purge_usage_minutes(chrono::Duration::days(i64::from(
                            minutes_retention_days,
                        )))
                        .await
                },
            ),
        ];
        for (what, result) in purges {
            match result {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    housekeeping.what = what,
                    housekeeping.purged = n,
                    "purged old rows"
                ),
                Err(e) => {
                    tracing::warn!(housekeeping.what = what, error.cause = %e, "purging old rows failed; will retry")
                }
            }
        }
    }
}
