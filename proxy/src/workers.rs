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

use std::convert::Infallible;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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

/// What a connection can be served by: a hyper service answering every request.
pub trait ConnectionService:
    Service<Request<Incoming>, Response = Response<Self::Body>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static
{
    type Body: Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static;
}

impl<S, B> ConnectionService for S
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static,
    B: Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static,
{
    type Body = B;
}

/// Accepts on `listener` until `stop`, handing connections to `workers` workers in
/// turn, each served by a clone of `service`; then lets every open connection finish
/// (graceful shutdown) and returns.
pub async fn serve_on_workers<S: ConnectionService>(
    listener: TcpListener,
    service: S,
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
        let service = service.clone();
        let stop = stop.clone();
        let exit = exit.clone();
        let thread = std::thread::Builder::new()
            .name(format!("strata-proxy-{n}"))
            .spawn(move || {
                crate::upstream::set_worker(n);
                runtime.block_on(async move {
                    worker(rx, service, stop).await;
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

/// What a client connection speaks.
enum Protocol {
    Http1,
    /// HTTP/2 with prior knowledge (h2c): it opens with the connection preface.
    Http2,
}

const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol of a new connection, from its first bytes, peeked rather than read:
/// hyper's HTTP/1 connection then reads them itself into its one 8 KiB buffer. (hyper-util's
/// `auto` builder reads them first and hands them over, which grew that buffer to 16 KiB
/// for every connection — 8 MiB more with 1,000 open streams, bench/proxy.sh.)
async fn protocol(stream: &tokio::net::TcpStream) -> Protocol {
    let mut first = [0u8; HTTP2_PREFACE.len()];
    loop {
        let n = match stream.peek(&mut first).await {
            Ok(n) if n > 0 => n,
            // Closed or failed before a byte: HTTP/1 reports it as it would.
            _ => return Protocol::Http1,
        };
        if first[..n] != HTTP2_PREFACE[..n] {
            return Protocol::Http1;
        }
        if n == HTTP2_PREFACE.len() {
            return Protocol::Http2;
        }
        // A partial preface: peeking again at once would see the same bytes.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Serves the connections it is handed until `stop`, then waits for them to finish.
async fn worker<S: ConnectionService>(
    mut connections: mpsc::Receiver<std::net::TcpStream>,
    service: S,
    stop: CancellationToken,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
        let service = service.clone();
        let watcher = graceful.watcher();
        let stop = stop.clone();
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            let protocol = tokio::select! {
                protocol = protocol(io.inner()) => protocol,
                // A connection that has sent nothing yet is closed when stopping (its
                // watcher would otherwise hold up the graceful shutdown).
                _ = stop.cancelled() => return,
            };
            // Errors are the client's (a reset, a malformed request): nothing to do.
            let _ = match protocol {
                Protocol::Http1 => {
                    let connection = http1::Builder::new().serve_connection(io, service);
                    watcher.watch(connection).await.map_err(drop)
                }
                Protocol::Http2 => {
                    let connection =
                        http2::Builder::new(TokioExecutor::new()).serve_connection(io, service);
                    watcher.watch(connection).await.map_err(drop)
                }
            };
        });
    }
    // Connections handed over but not yet picked up are closed unserved: only while
    // stopping, when the listener has gone already.
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Empty, Full};
    use hyper::body::Bytes;
    use tokio::io::AsyncWriteExt;

    use super::*;

    type Served = tokio::task::JoinHandle<std::io::Result<Drained>>;

    /// A worker pool on loopback answering every request with `hello`, until `stop`.
    async fn server() -> (std::net::SocketAddr, CancellationToken, Served) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        let stop = CancellationToken::new();
        let hello = hyper::service::service_fn(|_: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
        });
        let served = tokio::spawn(serve_on_workers(listener, hello, 2, stop.clone()));
        (addr, stop, served)
    }

    #[tokio::test]
    async fn a_connection_that_never_speaks_does_not_hold_up_shutdown() {
        let (addr, stop, served) = server().await;
        let _silent = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.cancel();
        let drained = tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .unwrap_or_else(|_| panic!("shutdown waited for a silent connection"))
            .unwrap_or_else(|e| panic!("join: {e}"))
            .unwrap_or_else(|e| panic!("serve: {e}"));
        drained
            .finish()
            .await
            .unwrap_or_else(|e| panic!("finish: {e}"));
    }

    fn get_root() -> hyper::Request<Empty<Bytes>> {
        hyper::Request::builder()
            .uri("http://127.0.0.1/")
            .body(Empty::new())
            .unwrap_or_else(|e| panic!("request: {e}"))
    }

    async fn body(response: hyper::Response<Incoming>) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("body: {e}"))
            .to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn http1_and_http2_with_prior_knowledge_are_both_served() {
        let (addr, stop, _served) = server().await;

        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap_or_else(|e| panic!("http1 handshake: {e}"));
        tokio::spawn(conn);
        let response = send
            .send_request(get_root())
            .await
            .unwrap_or_else(|e| panic!("http1: {e}"));
        assert_eq!(response.version(), hyper::Version::HTTP_11);
        assert_eq!(body(response).await, "hello");

        // The preface arrives in two pieces: the server waits for the whole of it.
        let mut tcp = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        tcp.write_all(&HTTP2_PREFACE[..10])
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let io = TokioIo::new(Rest(tcp, HTTP2_PREFACE[10..].to_vec()));
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap_or_else(|e| panic!("http2 handshake: {e}"));
        tokio::spawn(conn);
        let response = send
            .send_request(get_root())
            .await
            .unwrap_or_else(|e| panic!("http2: {e}"));
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        assert_eq!(body(response).await, "hello");
        stop.cancel();
    }

    /// A stream whose first written bytes skip the part of the HTTP/2 preface already
    /// sent by hand (hyper's client writes the whole preface itself).
    struct Rest(tokio::net::TcpStream, Vec<u8>);

    impl tokio::io::AsyncRead for Rest {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl tokio::io::AsyncWrite for Rest {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            data: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            // Drops the bytes of the preface that went out already, once.
            let skip = HTTP2_PREFACE.len() - self.1.len();
            if !self.1.is_empty() && data.starts_with(HTTP2_PREFACE) {
                self.1.clear();
                let n = std::task::ready!(
                    std::pin::Pin::new(&mut self.0).poll_write(cx, &data[skip..])
                )?;
                return std::task::Poll::Ready(Ok(n + skip));
            }
            std::pin::Pin::new(&mut self.0).poll_write(cx, data)
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }
}
