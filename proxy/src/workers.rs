//! Client connections served on one single-thread runtime per core.
//!
//! A request's work — the client connection, the handler, the pooled connection to
//! Mantle it checks out — then stays on one thread: no work stealing and no
//! wake-ups across threads between those tasks. `bench/proxy.sh` with
//! `BARE="pool local"` measured ~10 % less CPU per request for the same forwarding
//! (BENCHMARKS.md). The accept loop and everything long-lived (policy follower,
//! metering, background responses) stay on the main runtime.
//!
//! A worker's runtime outlives its connections: tasks started on it (pooled Mantle
//! and control-plane connections, the Redis connection, limit settlements) keep
//! running until the proxy has released its reservations and flushed its usage.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Connections waiting for a worker, per worker.
const QUEUE: usize = 1024;

/// The workers once every connection has finished: still running, until `finish`.
pub struct Drained {
    exit: CancellationToken,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drained {
    /// Stops the workers' runtimes and waits for their threads.
    pub async fn finish(self) -> std::io::Result<()> {
        self.exit.cancel();
        let threads = self.threads;
        let joined =
            tokio::task::spawn_blocking(move || threads.into_iter().all(|t| t.join().is_ok()))
                .await;
        if joined.unwrap_or(false) {
            Ok(())
        } else {
            Err(std::io::Error::other("a proxy worker thread panicked"))
        }
    }
}

/// The number of connection workers: one per core the process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Accepts on `listener` until `stop`, handing connections to `workers` workers in
/// turn; then lets every open connection finish (graceful shutdown) and returns.
pub async fn serve_on_workers(
    listener: TcpListener,
    router: Router,
    workers: usize,
    stop: CancellationToken,
) -> std::io::Result<Drained> {
    let exit = CancellationToken::new();
    let mut queues = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    let mut drained = Vec::with_capacity(workers);
    for n in 0..workers.max(1) {
        let (tx, rx) = mpsc::channel::<std::net::TcpStream>(QUEUE);
        let (done, done_rx) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let router = router.clone();
        let stop = stop.clone();
        let exit = exit.clone();
        let thread = std::thread::Builder::new()
            .name(format!("strata-proxy-{n}"))
            .spawn(move || {
                crate::upstream::set_worker(n);
                runtime.block_on(async move {
                    worker(rx, router, stop).await;
                    let _ = done.send(());
                    exit.cancelled().await;
                });
            })?;
        queues.push(tx);
        threads.push(thread);
        drained.push(done_rx);
    }
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was
                // accepted: keep serving the others.
                tracing::warn!(error.cause = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        next = (next + 1) % queues.len();
        if queues[next].send(stream).await.is_err() {
            tracing::error!("a proxy worker thread stopped; no more connections are served");
            break;
        }
    }
    drop(listener);
    drop(queues);
    for done in drained {
        // An error: the worker's thread ended early (a panic); `finish` reports it.
        let _ = done.await;
    }
    Ok(Drained { exit, threads })
}

/// Serves the connections it is handed until `stop`, then waits for them to finish.
async fn worker(
    mut connections: mpsc::Receiver<std::net::TcpStream>,
    router: Router,
    stop: CancellationToken,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let service = router.map_request(|request: Request<Incoming>| request.map(Body::new));
    loop {
        let stream = tokio::select! {
            stream = connections.recv() => match stream {
                Some(stream) => stream,
                None => break,
            },
            _ = stop.cancelled() => break,
        };
        let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
            continue;
        };
        let service = TowerToHyperService::new(service.clone());
        let connection = Builder::new(TokioExecutor::new())
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _: Result<(), Box<dyn std::error::Error + Send + Sync>> = connection.await;
        });
    }
    // Connections handed over but not yet picked up are closed unserved: only while
    // stopping, when the listener has gone already.
    graceful.shutdown().await;
}
