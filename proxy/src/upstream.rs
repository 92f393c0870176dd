//! The proxy's HTTP client for Mantle: HTTP/1.1 over rustls (aws-lc-rs, the
//! platform's certificate verifier), on hyper's connection API with a pool of its own.
//!
//! Through reqwest the same forwarding cost about 50 µs more CPU per request on the
//! benchmark machine (`bench/proxy.sh`, `BARE="pool reqwest"`; BENCHMARKS.md) — URL
//! handling, proxy matching and timeout wrappers the proxy has no use for. hyper-util's
//! pooled client, used until the seventh pass, still spent about a tenth of a chat
//! request's own instructions per call: its pool key hashed with SipHash, the `Host`
//! header formatted anew, a task spawned to wait for the connection to become idle
//! again. Here each connection worker keeps its own idle connections per origin,
//! the `Host` header comes ready-made with the destination, and a connection goes
//! back to its pool when its answer has been read to the end.
//!
//! Timeouts, as configured: a plain answer must arrive whole within `timeout`; a
//! stream ends when Mantle stays silent for `idle` (waiting for its headers included).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::control::StartError;
use axum::body::Bytes;
use axum::http::uri::{Authority, Scheme};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, Uri, header};
use futures_util::stream::BoxStream;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower::ServiceExt;

/// How long an idle pooled connection to Mantle is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// The most idle connections a pool keeps per origin; more are closed when they end.
const MAX_IDLE_PER_ORIGIN: usize = 256;

type Connector = HttpsConnector<HttpConnector>;
type Sender = SendRequest<Full<Bytes>>;

/// Where a call to Mantle goes, parsed once: the origin to connect to, the path to
/// ask for, and the `Host` header for it.
#[derive(Clone, Debug)]
pub struct Destination {
    scheme: Scheme,
    authority: Authority,
    /// Origin-form (path and query), as HTTP/1.1 sends it to an origin server.
    path: Uri,
    host: HeaderValue,
}

impl Destination {
    /// An absolute `http` or `https` URL without user info; `None` otherwise.
    pub fn parse(url: &str) -> Option<Self> {
        let uri: Uri = url.parse().ok()?;
        let scheme = uri.scheme()?.clone();
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return None;
        }
        let authority = uri.authority()?.clone();
        if authority.as_str().contains('@') {
            return None;
        }
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => authority.as_str(),
            _ => authority.host(),
        };
        let host = HeaderValue::from_str(host).ok()?;
        let path = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .ok()?;
        Some(Self {
            scheme,
            authority,
            path,
            host,
        })
    }

    /// The URL to connect to (scheme and authority only), for the connector.
    fn origin(&self) -> Uri {
        let mut parts = axum::http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(axum::http::uri::PathAndQuery::from_static("/"));
        Uri::from_parts(parts).unwrap_or_default()
    }

    fn same_origin(&self, scheme: &Scheme, authority: &Authority) -> bool {
        self.scheme == *scheme && self.authority == *authority
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// One origin's idle connections, the most recently used last.
struct Origin {
    scheme: Scheme,
    authority: Authority,
    idle: Vec<Idle>,
}

/// The connections to Mantle of one connection worker (or of everything else).
/// A worker's pool is only used from its own thread, so its lock is never contended.
struct Pool {
    connector: Connector,
    /// Few origins (one per region in use): searched in order rather than hashed.
    origins: Mutex<Vec<Origin>>,
}

impl Pool {
    fn origins(&self) -> std::sync::MutexGuard<'_, Vec<Origin>> {
        // Nothing in the list can be left half-changed by a panic.
        self.origins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently used idle connection to `to` that is still open.
    fn take(&self, to: &Destination, now: Instant) -> Option<Sender> {
        let mut origins = self.origins();
        let origin = origins
            .iter_mut()
            .find(|o| to.same_origin(&o.scheme, &o.authority))?;
        while let Some(idle) = origin.idle.pop() {
            if !idle.sender.is_closed() && now.duration_since(idle.since) < POOL_IDLE {
                return Some(idle.sender);
            }
        }
        None
    }

    /// Keeps a connection whose answer was read to the end for the next call.
    fn put(&self, scheme: Scheme, authority: Authority, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut origins = self.origins();
        let at = match origins
            .iter()
            .position(|o| o.scheme == scheme && o.authority == authority)
        {
            Some(at) => at,
            None => {
                origins.push(Origin {
                    scheme,
                    authority,
                    idle: Vec::new(),
                });
                origins.len() - 1
            }
        };
        let idle = &mut origins[at].idle;
        // The oldest come first: drop those kept too long or closed by Mantle since.
        let stale = idle
            .iter()
            .take_while(|i| now.duration_since(i.since) >= POOL_IDLE || i.sender.is_closed())
            .count();
        idle.drain(..stale);
        if idle.len() < MAX_IDLE_PER_ORIGIN {
            idle.push(Idle { sender, since: now });
        }
    }

    /// A new connection to `to`, its HTTP/1.1 side driven by a task of its own on the
    /// current runtime.
    async fn connect(&self, to: &Destination) -> Result<Sender, UpstreamError> {
        let io = self
            .connector
            .clone()
            .oneshot(to.origin())
            .await
            .map_err(|e| UpstreamError::transport(e.as_ref()))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| UpstreamError::transport(&e))?;
        tokio::spawn(async move {
            // Its errors reach the call it was serving (as that call's error).
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Sends `request` on an idle connection to `to`, or a new one. A pooled
    /// connection Mantle closed while it was idle hands the request back unsent; it
    /// then goes on the next (so a call never fails for a connection it did not use).
    async fn call(
        &self,
        to: &Destination,
        mut request: Request<Full<Bytes>>,
        now: Instant,
    ) -> Result<(hyper::Response<Incoming>, Sender), UpstreamError> {
        while let Some(mut sender) = self.take(to, now) {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, sender)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(UpstreamError::transport(e.error())),
                },
            }
        }
        let mut sender = self.connect(to).await?;
        sender
            .ready()
            .await
            .map_err(|e| UpstreamError::transport(&e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| UpstreamError::transport(&e))?;
        Ok((response, sender))
    }
}

/// One connection pool per connection worker (`workers.rs`) and one for the rest:
/// a request's connection to Mantle is then driven on the request's own thread.
pub struct UpstreamClient {
    main: Arc<Pool>,
    workers: Vec<Arc<Pool>>,
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

    /// What failed, by its innermost cause (refused, reset, TLS); never a secret.
    fn transport(e: &(dyn std::error::Error + 'static)) -> Self {
        let mut cause = e;
        while let Some(source) = cause.source() {
            cause = source;
        }
        Self::Transport(cause.to_string())
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
    ) -> Result<Self, StartError> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            rustls_platform_verifier::BuilderVerifierExt::with_platform_verifier(builder)
        })
        .map_err(StartError::Tls)?
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

    fn pool(tls: rustls::ClientConfig, connect: Duration) -> Arc<Pool> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Arc::new(Pool {
            connector,
            origins: Mutex::new(Vec::new()),
        })
    }

    /// Sends `request` (its URI and `Host` set here) to `to`; a `stream` is held to
    /// the idle timeout, anything else to the overall one (which the returned answer's
    /// body carries on).
    pub async fn send(
        &self,
        to: &Destination,
        mut request: Request<Full<Bytes>>,
        stream: bool,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let now = Instant::now();
        let deadline = (!stream).then(|| now + self.timeout);
        let wait = deadline.unwrap_or_else(|| now + self.idle);
        let pool = POOL
            .with(|p| p.get())
            .checked_sub(1)
            .and_then(|n| self.workers.get(n))
            .unwrap_or(&self.main);
        *request.uri_mut() = to.path.clone();
        request.headers_mut().insert(header::HOST, to.host.clone());
        let (response, sender) = tokio::time::timeout_at(wait, pool.call(to, request, now))
            .await
            .map_err(|_| UpstreamError::Timeout)??;
        let (parts, body) = response.into_parts();
        Ok(UpstreamResponse {
            status: parts.status,
            headers: parts.headers,
            body: UpstreamBody {
                body,
                deadline,
                idle: self.idle,
                connection: Some(Pooled {
                    pool: pool.clone(),
                    scheme: to.scheme.clone(),
                    authority: to.authority.clone(),
                    sender,
                }),
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

/// The connection an answer came on, returned to its pool once the answer has been
/// read to the end (dropped with the answer otherwise, which closes it).
struct Pooled {
    pool: Arc<Pool>,
    scheme: Scheme,
    authority: Authority,
    sender: Sender,
}

/// The body of an answer with its timeouts, apart from the headers: hyper's header
/// values are slices of the connection's first read buffer, which a stream would
/// otherwise keep alive (8 KiB per open stream) beside the buffer it reads into.
struct UpstreamBody {
    body: Incoming,
    /// Set for a plain call: the whole body must be read by then.
    deadline: Option<Instant>,
    idle: Duration,
    connection: Option<Pooled>,
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
                Ok(None) => {
                    if let Some(c) = self.connection.take() {
                        c.pool.put(c.scheme, c.authority, c.sender);
                    }
                    return None;
                }
                Ok(Some(Err(e))) => return Some(Err(UpstreamError::transport(&e))),
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

    fn get() -> Request<Full<Bytes>> {
        Request::get("/")
            .body(Full::new(Bytes::new()))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn to(url: &str) -> Destination {
        Destination::parse(url).unwrap_or_else(|| panic!("not a destination: {url}"))
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
        hello(&client, &format!("https://{addr}/v1/models")).await;
    }

    #[tokio::test]
    async fn a_certificate_the_platform_does_not_trust_is_refused() {
        let addr = https_server().await;
        let client =
            UpstreamClient::new(0, SECONDS, SECONDS, SECONDS).unwrap_or_else(|e| panic!("{e}"));
        let refused = client
            .send(&to(&format!("https://{addr}/v1/models")), get(), false)
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
            .send(&to(&format!("http://{addr}/")), get(), false)
            .await
            .err();
        assert!(e.is_some_and(|e| e.is_timeout()));
        assert!(started.elapsed() < SECONDS);
        // Headers, then a body that never comes: the same deadline.
        let addr = silent_server(Some(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")).await;
        let answer = client
            .send(&to(&format!("http://{addr}/")), get(), false)
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
            .send(&to(&format!("http://{addr}/")), get(), true)
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

    /// An HTTP/1.1 server answering `hello` to each request (keep-alive); with
    /// `close_after`, it closes each connection that long after its first answer.
    /// Counts the connections it accepted and the `Host` headers it saw.
    async fn counting_server(
        close_after: Option<Duration>,
    ) -> (
        SocketAddr,
        Arc<std::sync::atomic::AtomicUsize>,
        Arc<Mutex<Vec<String>>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hosts = Arc::new(Mutex::new(Vec::new()));
        let (counter, seen) = (accepted.clone(), hosts.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let seen = seen.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let host = req
                        .headers()
                        .get(header::HOST)
                        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
                        .unwrap_or_default();
                    seen.lock().unwrap_or_else(|e| panic!("{e}")).push(host);
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"hello"),
                        )))
                    }
                });
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
                    match close_after {
                        // Dropping the connection closes the socket under the client's
                        // idle pooled connection.
                        Some(after) => {
                            let _ = tokio::time::timeout(after, connection).await;
                        }
                        None => {
                            let _ = connection.await;
                        }
                    }
                });
            }
        });
        (addr, accepted, hosts)
    }

    /// One call to `url`, answered 200 `hello`.
    async fn hello(client: &UpstreamClient, url: &str) {
        let answer = client
            .send(&to(url), get(), false)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer.status(), StatusCode::OK);
        let body = answer.bytes().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&body[..], b"hello");
    }

    #[tokio::test]
    async fn a_connection_read_to_the_end_is_used_again() {
        let (addr, accepted, hosts) = counting_server(None).await;
        let client =
            UpstreamClient::new(0, SECONDS, SECONDS, SECONDS).unwrap_or_else(|e| panic!("{e}"));
        let url = format!("http://{addr}/v1/chat/completions");
        for _ in 0..3 {
            hello(&client, &url).await;
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        // HTTP/1.1 needs `Host`: the authority, its port included when not the default.
        let hosts = hosts.lock().unwrap_or_else(|e| panic!("{e}")).clone();
        assert_eq!(hosts, vec![addr.to_string(); 3]);
        // An answer not read to the end leaves its connection out of the pool.
        let unread = client
            .send(&to(&url), get(), false)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        drop(unread);
        hello(&client, &url).await;
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_pooled_connection_mantle_closed_is_replaced_without_failing_the_call() {
        let (addr, accepted, _) = counting_server(Some(Duration::from_millis(50))).await;
        let client =
            UpstreamClient::new(0, SECONDS, SECONDS, SECONDS).unwrap_or_else(|e| panic!("{e}"));
        let url = format!("http://{addr}/v1/chat/completions");
        hello(&client, &url).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        hello(&client, &url).await;
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn destinations_are_absolute_http_urls_without_user_info() {
        let d = to("https://bedrock-mantle.us-east-1.api.aws/v1/chat/completions?x=1");
        assert_eq!(d.host, "bedrock-mantle.us-east-1.api.aws");
        assert_eq!(d.path, "/v1/chat/completions?x=1");
        assert_eq!(to("https://example.com:443/v1").host, "example.com");
        assert_eq!(to("http://127.0.0.1:8080").host, "127.0.0.1:8080");
        assert_eq!(to("http://127.0.0.1:8080").path, "/");
        for bad in [
            "/v1/models",
            "ftp://example.com/",
            "http://user:pw@example.com/",
        ] {
            assert!(Destination::parse(bad).is_none(), "{bad}");
        }
    }
}
