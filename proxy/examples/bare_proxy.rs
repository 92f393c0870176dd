//! The floor of a proxy built on tokio and hyper: it forwards every request to one
//! upstream and does nothing else (no key, no policy, no signing, no metering).
//! `bench/proxy.sh` runs it beside nginx `proxy_pass` and `strata proxy` (`BARE=1`),
//! to tell what the stack itself costs from what strata's work costs.
//!
//!   bare_proxy LISTEN UPSTREAM_HOST:PORT PATH_PREFIX [pool|pinned]
//!
//! `pool`: a multi-thread runtime, hyper-util's pooled client (reqwest's model).
//! `pinned`: one single-thread runtime per core on its own `SO_REUSEPORT` listener;
//! each client connection gets its own upstream connection, driven by the same task.
//! `local`: one single-thread runtime per core as `pinned`, each with its own pool.
//! `reqwest`: as `pool`, through reqwest, both bodies read whole (as strata does).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

type BoxBody = http_body_util::combinators::UnsyncBoxBody<hyper::body::Bytes, hyper::Error>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream, prefix, rest @ ..] = args.as_slice() else {
        return Err("usage: bare_proxy LISTEN UPSTREAM PREFIX [pool|pinned]".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let upstream: SocketAddr = upstream.parse()?;
    let prefix: &'static str = Box::leak(prefix.clone().into_boxed_str());
    match rest.first().map(String::as_str).unwrap_or("pool") {
        "pool" => pool(listen, upstream, prefix),
        "pinned" => pinned(listen, upstream, prefix),
        "local" => local_pools(listen, upstream, prefix),
        "collect" => collect(listen, upstream, prefix),
        "reqwest" => with_reqwest(listen, upstream, prefix, false),
        "reqwest-no-proxy" => with_reqwest(listen, upstream, prefix, true),
        other => Err(format!("unknown mode {other}").into()),
    }
}

fn listener(addr: SocketAddr, reuse_port: bool) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(reuse_port)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

fn upstream_request(
    req: Request<Incoming>,
    upstream: SocketAddr,
    prefix: &str,
) -> Request<Incoming> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let path = path.strip_prefix("/v1").unwrap_or(path);
    parts.uri = format!("http://{upstream}{prefix}/v1{path}")
        .parse()
        .unwrap_or_default();
    parts.headers.remove(hyper::header::AUTHORIZATION);
    Request::from_parts(parts, body)
}

fn bad_gateway() -> Response<BoxBody> {
    let mut r = Response::new(
        http_body_util::Empty::new()
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
    r
}

fn pool(
    listen: SocketAddr,
    upstream: SocketAddr,
    prefix: &'static str,
) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = multi_thread()?;
    Ok(
        runtime
            .block_on(async move { pooled(listener(listen, false)?, upstream, prefix).await })?,
    )
}

/// Accepts on `listener`, a task per connection, each request answered by `handle`.
async fn accept_loop<H, Fut>(listener: tokio::net::TcpListener, handle: H) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Response<BoxBody>> + Send + 'static,
{
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let answer = handle(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn multi_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn full(bytes: hyper::body::Bytes) -> BoxBody {
    http_body_util::Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// Serves `listener` with hyper-util's pooled client, bodies streamed through.
async fn pooled(
    listener: tokio::net::TcpListener,
    upstream: SocketAddr,
    prefix: &'static str,
) -> std::io::Result<()> {
    let client: hyper_util::client::legacy::Client<_, Incoming> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    accept_loop(listener, move |req| {
        let client = client.clone();
        async move {
            match client
                .request(upstream_request(req, upstream, prefix))
                .await
            {
                Ok(r) => r.map(|b| b.boxed_unsync()),
                Err(_) => bad_gateway(),
            }
        }
    })
    .await
}

/// Runs `serve` on one single-thread runtime per core, each on its own
/// `SO_REUSEPORT` listener, until one fails.
fn per_core<F, Fut>(listen: SocketAddr, serve: F) -> Result<(), Box<dyn std::error::Error>>
where
    F: Fn(tokio::net::TcpListener) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>>,
{
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            std::thread::spawn(move || -> std::io::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let local = tokio::task::LocalSet::new();
                local.block_on(
                    &runtime,
                    async move { serve(listener(listen, true)?).await },
                )
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a worker panicked")??;
    }
    Ok(())
}

fn pinned(
    listen: SocketAddr,
    upstream: SocketAddr,
    prefix: &'static str,
) -> Result<(), Box<dyn std::error::Error>> {
    per_core(listen, move |listener| async move {
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::task::spawn_local(pinned_connection(stream, upstream, prefix));
        }
    })
}

async fn pinned_connection(
    stream: tokio::net::TcpStream,
    upstream: SocketAddr,
    prefix: &'static str,
) {
    let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
        return;
    };
    let _ = up.set_nodelay(true);
    let Ok((sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(up)).await
    else {
        return;
    };
    let sender = Rc::new(tokio::sync::Mutex::new(sender));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let sender = sender.clone();
        async move {
            let mut sender = sender.lock().await;
            if sender.ready().await.is_err() {
                return Ok(bad_gateway());
            }
            // A bare connection sends the target as given: origin-form, not absolute.
            let mut req = upstream_request(req, upstream, prefix);
            let origin = req.uri().path_and_query().map_or("/", |p| p.as_str());
            *req.uri_mut() = origin.parse().unwrap_or_default();
            let answer = match sender.send_request(req).await {
                Ok(r) => r.map(|b| b.boxed_unsync()),
                Err(_) => bad_gateway(),
            };
            Ok::<_, Infallible>(answer)
        }
    });
    let server =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    // The upstream may close first (no keep-alive): the answer still goes out.
    let mut server = std::pin::pin!(server);
    tokio::select! {
        _ = &mut server => {}
        _ = connection => { let _ = server.await; }
    }
}

fn local_pools(
    listen: SocketAddr,
    upstream: SocketAddr,
    prefix: &'static str,
) -> Result<(), Box<dyn std::error::Error>> {
    per_core(listen, move |listener| pooled(listener, upstream, prefix))
}

fn with_reqwest(
    listen: SocketAddr,
    upstream: SocketAddr,
    prefix: &'static str,
    no_proxy: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = multi_thread()?;
    runtime.block_on(async move {
        let mut client =
            reqwest::Client::builder().retry(reqwest::retry::never().max_retries_per_request(0));
        if no_proxy {
            client = client.no_proxy();
        }
        let client = client.build()?;
        let url: reqwest::Url = format!("http://{upstream}{prefix}/v1/chat/completions").parse()?;
        let serving = accept_loop(listener(listen, false)?, move |req| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let Ok(body) = req.into_body().collect().await else {
                    return bad_gateway();
                };
                let sent = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.to_bytes())
                    .send()
                    .await;
                match sent {
                    Ok(r) => r
                        .bytes()
                        .await
                        .map_or_else(|_| bad_gateway(), |b| Response::new(full(b))),
                    Err(_) => bad_gateway(),
                }
            }
        });
        Ok(serving.await?)
    })
}

fn collect(
    listen: SocketAddr,
    upstream: SocketAddr,
    prefix: &'static str,
) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = multi_thread()?;
    runtime.block_on(async move {
        let client: hyper_util::client::legacy::Client<
            _,
            http_body_util::Full<hyper::body::Bytes>,
        > = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
        let serving = accept_loop(listener(listen, false)?, move |req| {
            let client = client.clone();
            async move {
                let (parts, body) = upstream_request(req, upstream, prefix).into_parts();
                let Ok(body) = body.collect().await else {
                    return bad_gateway();
                };
                let req = Request::from_parts(parts, http_body_util::Full::new(body.to_bytes()));
                let Ok(answer) = client.request(req).await else {
                    return bad_gateway();
                };
                let (parts, body) = answer.into_parts();
                match body.collect().await {
                    Ok(b) => Response::from_parts(parts, full(b.to_bytes())),
                    Err(_) => bad_gateway(),
                }
            }
        });
        Ok::<_, Box<dyn std::error::Error>>(serving.await?)
    })
}
