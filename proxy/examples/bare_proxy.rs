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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client: hyper_util::client::legacy::Client<_, Incoming> =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
        let listener = listener(listen, false)?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let client = client.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let client = client.clone();
                    async move {
                        let answer = match client
                            .request(upstream_request(req, upstream, prefix))
                            .await
                        {
                            Ok(r) => r.map(|b| b.boxed_unsync()),
                            Err(_) => bad_gateway(),
                        };
                        Ok::<_, Infallible>(answer)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

fn pinned(
    listen: SocketAddr,
    upstream: SocketAddr,
    prefix: &'static str,
) -> Result<(), Box<dyn std::error::Error>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            std::thread::spawn(move || -> std::io::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    let listener = listener(listen, true)?;
                    loop {
                        let (stream, _) = listener.accept().await?;
                        stream.set_nodelay(true)?;
                        tokio::task::spawn_local(pinned_connection(stream, upstream, prefix));
                    }
                })
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a worker panicked")??;
    }
    Ok(())
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
            let answer = match sender
                .send_request(upstream_request(req, upstream, prefix))
                .await
            {
                Ok(r) => r.map(|b| b.boxed_unsync()),
                Err(_) => bad_gateway(),
            };
            Ok::<_, Infallible>(answer)
        }
    });
    let server =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = server => {}
        _ = connection => {}
    }
}

fn local_pools(
    listen: SocketAddr,
    upstream: SocketAddr,
    prefix: &'static str,
) -> Result<(), Box<dyn std::error::Error>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            std::thread::spawn(move || -> std::io::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let client: hyper_util::client::legacy::Client<_, Incoming> =
                        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                            .build_http();
                    let listener = listener(listen, true)?;
                    loop {
                        let (stream, _) = listener.accept().await?;
                        stream.set_nodelay(true)?;
                        let client = client.clone();
                        tokio::spawn(async move {
                            let service =
                                hyper::service::service_fn(move |req: Request<Incoming>| {
                                    let client = client.clone();
                                    async move {
                                        let answer = match client
                                            .request(upstream_request(req, upstream, prefix))
                                            .await
                                        {
                                            Ok(r) => r.map(|b| b.boxed_unsync()),
                                            Err(_) => bad_gateway(),
                                        };
                                        Ok::<_, Infallible>(answer)
                                    }
                                });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                })
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a worker panicked")??;
    }
    Ok(())
}

fn with_reqwest(
    listen: SocketAddr,
    upstream: SocketAddr,
    prefix: &'static str,
    no_proxy: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut client =
            reqwest::Client::builder().retry(reqwest::retry::never().max_retries_per_request(0));
        if no_proxy {
            client = client.no_proxy();
        }
        let client = client.build()?;
        let url: reqwest::Url = format!("http://{upstream}{prefix}/v1/chat/completions").parse()?;
        let listener = listener(listen, false)?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let client = client.clone();
                    let url = url.clone();
                    async move {
                        let Ok(body) = req.into_body().collect().await else {
                            return Ok::<_, Infallible>(bad_gateway());
                        };
                        let sent = client
                            .post(url)
                            .header("content-type", "application/json")
                            .body(body.to_bytes())
                            .send()
                            .await;
                        let answer = match sent {
                            Ok(r) => match r.bytes().await {
                                Ok(b) => Response::new(
                                    http_body_util::Full::new(b)
                                        .map_err(|never: Infallible| match never {})
                                        .boxed_unsync(),
                                ),
                                Err(_) => bad_gateway(),
                            },
                            Err(_) => bad_gateway(),
                        };
                        Ok(answer)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

fn collect(
    listen: SocketAddr,
    upstream: SocketAddr,
    prefix: &'static str,
) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client: hyper_util::client::legacy::Client<
            _,
            http_body_util::Full<hyper::body::Bytes>,
        > = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
        let listener = listener(listen, false)?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let client = client.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let client = client.clone();
                    async move {
                        let (parts, body) = upstream_request(req, upstream, prefix).into_parts();
                        let Ok(body) = body.collect().await else {
                            return Ok::<_, Infallible>(bad_gateway());
                        };
                        let req =
                            Request::from_parts(parts, http_body_util::Full::new(body.to_bytes()));
                        let answer = match client.request(req).await {
                            Ok(r) => {
                                let (parts, body) = r.into_parts();
                                match body.collect().await {
                                    Ok(b) => Response::from_parts(
                                        parts,
                                        http_body_util::Full::new(b.to_bytes())
                                            .map_err(|never: Infallible| match never {})
                                            .boxed_unsync(),
                                    ),
                                    Err(_) => bad_gateway(),
                                }
                            }
                            Err(_) => bad_gateway(),
                        };
                        Ok(answer)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
