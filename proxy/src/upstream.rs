//! The proxy's HTTP client for Mantle: hyper-util's pooled HTTP/1.1 client over
//! rustls (aws-lc-rs, the platform's certificate verifier), used directly.
//!
//! Through reqwest the same forwarding cost about 50 µs more CPU per request on the
//! benchmark machine (`bench/proxy.sh`, `BARE="pool reqwest"`; BENCHMARKS.md) — URL
//! handling, proxy matching and timeout wrappers the proxy has no use for.
//!
//! Timeouts, as configured: a plain answer must arrive whole within `timeout`; a
//! stream ends when Mantle stays silent for `idle` (waiting for its headers included).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Request, StatusCode};
use futures_util::stream::BoxStream;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

/// How long an idle pooled connection to Mantle is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);

type Pool = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One connection pool per connection worker (`workers.rs`) and one for the rest:
/// a request's connection to Mantle is then driven on the request's own thread.
pub struct UpstreamClient {
    main: Pool,
    workers: Vec<Pool>,
    timeout: Duration,
    idle: Duration,
}

thread_local! {
    /// This thread's pool: its worker number + 1, or 0 off the workers.
    static POOL: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as connection worker `n` (its own pool).
pub(crate) fn set_worker(n: usize) {
    POOL.with(|p| p.set(n + 1));
}

/// A call to Mantle that failed before or while its answer was read.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("Mantle did not answer in time")]
    Timeout,
    #[error("{0}")]
    Transport(String),
}

impl UpstreamError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    fn transport(e: impl std::fmt::Display) -> Self {
        Self::Transport(e.to_string())
    }
}

impl UpstreamClient {
    /// `timeout`: a plain answer's time in all; `idle`: a stream's longest silence.
    /// Mantle's certificate is checked by the platform's verifier (the system's roots).
    pub fn new(
        workers: usize,
        connect: Duration,
        timeout: Duration,
        idle: Duration,
    ) -> Result<Self, String> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            rustls_platform_verifier::BuilderVerifierExt::with_platform_verifier(builder)
        })
        .map_err(|e| format!("cannot set up TLS for Mantle: {e}"))?
        .with_no_client_auth();
        Ok(Self::with_tls(workers, tls, connect, timeout, idle))
    }

    fn with_tls(
        workers: usize,
        tls: rustls::ClientConfig,
        connect: Duration,
        timeout: Duration,
        idle: Duration,
    ) -> Self {
        Self {
            main: Self::pool(tls.clone(), connect),
            workers: (0..workers)
                .map(|_| Self::pool(tls.clone(), connect))
                .collect(),
            timeout,
            idle,
        }
    }

    fn pool(tls: rustls::ClientConfig, connect: Duration) -> Pool {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(https)
    }

    /// Sends `request`; a `stream` is held to the idle timeout, anything else to the
    /// overall one (which the returned answer's body carries on).
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
        stream: bool,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let deadline = (!stream).then(|| Instant::now() + self.timeout);
        let wait = deadline.unwrap_or_else(|| Instant::now() + self.idle);
        let client = POOL
            .with(|p| p.get())
            .checked_sub(1)
            .and_then(|n| self.workers.get(n))
            .unwrap_or(&self.main);
        let response = tokio::time::timeout_at(wait, client.request(request))
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(|e| {
                // The source names what failed (refused, reset, TLS); never a secret.
                let cause =
                    std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
                UpstreamError::transport(cause)
            })?;
        let (parts, body) = response.into_parts();
        Ok(UpstreamResponse {
            status: parts.status,
            headers: parts.headers,
            body: UpstreamBody {
                body,
                deadline,
                idle: self.idle,
            },
        })
    }
}

/// Mantle's answer, its body not read yet.
pub struct UpstreamResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: UpstreamBody,
}

/// The body of an answer with its timeouts, apart from the headers: hyper's header
/// values are slices of the connection's first read buffer, which a stream would
/// otherwise keep alive (8 KiB per open stream) beside the buffer it reads into.
struct UpstreamBody {
    body: Incoming,
    /// Set for a plain call: the whole body must be read by then.
    deadline: Option<Instant>,
    idle: Duration,
}

impl UpstreamResponse {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes, UpstreamError> {
        let mut body = self.body;
        let mut chunks: Vec<Bytes> = Vec::new();
        while let Some(chunk) = body.next_chunk().await {
            chunks.push(chunk?);
        }
        Ok(match chunks.len() {
            1 => chunks.swap_remove(0),
            _ => Bytes::from(chunks.concat()),
        })
    }

    /// The body as it arrives (the headers are dropped).
    pub fn bytes_stream(self) -> BoxStream<'static, Result<Bytes, UpstreamError>> {
        Box::pin(futures_util::stream::unfold(
            self.body,
            |mut body| async move {
                let next = body.next_chunk().await?;
                Some((next, body))
            },
        ))
    }
}

impl UpstreamBody {
    /// The next piece of data (trailers skipped), `None` at the end.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, UpstreamError>> {
        loop {
            let limit = self.deadline.unwrap_or_else(|| Instant::now() + self.idle);
            let frame = match tokio::time::timeout_at(limit, self.body.frame()).await {
                Err(_) => return Some(Err(UpstreamError::Timeout)),
                Ok(None) => return None,
                Ok(Some(Err(e))) => return Some(Err(UpstreamError::transport(e))),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data()
                && !data.is_empty()
            {
                return Some(Ok(data));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const SECONDS: Duration = Duration::from_secs(5);

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    /// An HTTPS server on loopback with the test CA's certificate for 127.0.0.1,
    /// answering every request with `hello`.
    async fn https_server() -> SocketAddr {
        let certs = CertificateDer::pem_file_iter(fixture("server.pem"))
            .and_then(|c| c.collect::<Result<Vec<_>, _>>())
            .unwrap_or_else(|e| panic!("server.pem: {e}"));
        let key = PrivateKeyDer::from_pem_file(fixture("server.key"))
            .unwrap_or_else(|e| panic!("server.key: {e}"));
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
            .unwrap_or_else(|e| panic!("server config: {e}"));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"hello"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        addr
    }

    fn get(url: &str) -> Request<Full<Bytes>> {
        Request::get(url)
            .body(Full::new(Bytes::new()))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn https_to_a_trusted_certificate_answers() {
        let addr = https_server().await;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(fixture("ca.pem")).unwrap_or_else(|e| panic!("{e}"))
        {
            roots
                .add(ca.unwrap_or_else(|e| panic!("{e}")))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| panic!("{e}"))
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = UpstreamClient::with_tls(0, tls, SECONDS, SECONDS, SECONDS);
        let answer = client
            .send(get(&format!("https://{addr}/v1/models")), false)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer.status(), StatusCode::OK);
        let body = answer.bytes().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&body[..], b"hello");
    }

    #[tokio::test]
    async fn a_certificate_the_platform_does_not_trust_is_refused() {
        let addr = https_server().await;
        let client =
            UpstreamClient::new(0, SECONDS, SECONDS, SECONDS).unwrap_or_else(|e| panic!("{e}"));
        let refused = client
            .send(get(&format!("https://{addr}/v1/models")), false)
            .await
            .err()
            .unwrap_or_else(|| panic!("a certificate of an unknown CA was accepted"));
        assert!(!refused.is_timeout());
        assert!(
            refused.to_string().to_lowercase().contains("certificate"),
            "{refused}"
        );
    }

    /// A server that reads a request and answers `head` (if any), then stays silent.
    async fn silent_server(head: Option<&'static [u8]>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = tcp.read(&mut buf).await;
                    if let Some(head) = head {
                        let _ = tcp.write_all(head).await;
                    }
                    tokio::time::sleep(Duration::from_secs(60)).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_plain_call_gets_its_overall_timeout_body_included() {
        let short = Duration::from_millis(300);
        // No answer at all.
        let addr = silent_server(None).await;
        let client =
            UpstreamClient::new(0, SECONDS, short, SECONDS).unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        let e = client
            .send(get(&format!("http://{addr}/")), false)
            .await
            .err();
        assert!(e.is_some_and(|e| e.is_timeout()));
        assert!(started.elapsed() < SECONDS);
        // Headers, then a body that never comes: the same deadline.
        let addr = silent_server(Some(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")).await;
        let answer = client
            .send(get(&format!("http://{addr}/")), false)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let e = answer.bytes().await.err();
        assert!(e.is_some_and(|e| e.is_timeout()));
        assert!(started.elapsed() < SECONDS);
    }

    #[tokio::test]
    async fn a_silent_stream_ends_after_the_idle_timeout() {
        let idle = Duration::from_millis(300);
        let addr = silent_server(Some(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n5\r\ndata:\r\n",
        ))
        .await;
        // The overall timeout does not apply to a stream: only silence ends it.
        let client = UpstreamClient::new(0, SECONDS, Duration::from_millis(1), idle)
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = client
            .send(get(&format!("http://{addr}/")), true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut stream = answer.bytes_stream();
        use futures_util::StreamExt;
        let first = stream.next().await;
        assert!(
            matches!(first, Some(Ok(ref b)) if &b[..] == b"data:"),
            "{first:?}"
        );
        let started = Instant::now();
        let next = stream.next().await;
        assert!(
            matches!(next, Some(Err(UpstreamError::Timeout))),
            "{next:?}"
        );
        assert!(started.elapsed() >= idle && started.elapsed() < SECONDS);
    }
}
