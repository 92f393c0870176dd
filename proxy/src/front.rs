//! The proxy's front door: the service every client connection is served by.
//!
//! `POST /v1/chat/completions` and `POST /v1/responses` — nearly all of the proxy's
//! traffic — go straight to their handlers; everything else through axum's router
//! (`routes::routes`). The router's per-request work (path matching, a boxed clone of
//! the route, extensions for the matched and original path) and tower-http's
//! request-id layers were ~5 % of a chat request's instructions under callgrind
//! (BENCHMARKS.md "Sixth pass"). The two ways behave alike otherwise: both get
//! `x-request-id` here, and the router's own errors (405, 413) the OpenAI envelope
//! there.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use hyper::body::Incoming;
use tower::ServiceExt;

use crate::chat::chat_completions;
use crate::request_id::{ProcessRequestIds, REQUEST_ID};
use crate::responses::create_response;
use crate::routes::routes;
use crate::state::ProxyState;

const CHAT_PATH: &str = "/v1/chat/completions";
const RESPONSES_PATH: &str = "/v1/responses";

#[derive(Clone)]
pub struct Front {
    state: ProxyState,
    router: Router,
    ids: ProcessRequestIds,
}

impl Front {
    pub fn new(state: ProxyState) -> Self {
        Self {
            router: routes(state.clone()),
            state,
            ids: ProcessRequestIds::new(),
        }
    }
}

type Handling = Pin<Box<dyn Future<Output = Response> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: hyper::Request<Incoming>) -> Answer {
        // The client's own id is kept (copied: its bytes are a slice of the
        // connection's read buffer, which must not outlive the request's head).
        let id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|given| HeaderValue::from_bytes(given.as_bytes()).ok())
            .unwrap_or_else(|| self.ids.next());
        let post = request.method() == Method::POST;
        let handling: Handling = match request.uri().path() {
            CHAT_PATH if post => {
                Box::pin(chat_completions(self.state.clone(), request.map(Body::new)))
            }
            RESPONSES_PATH if post => {
                Box::pin(create_response(self.state.clone(), request.map(Body::new)))
            }
            _ => {
                let routed = self.router.clone().oneshot(request.map(Body::new));
                Box::pin(async move {
                    match routed.await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    }
                })
            }
        };
        Answer {
            handling,
            id: Some(id),
        }
    }
}

/// A request's answer, with its `x-request-id`.
pub struct Answer {
    handling: Handling,
    id: Option<HeaderValue>,
}

impl Future for Answer {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut response = ready!(self.handling.as_mut().poll(cx));
        if let Some(id) = self.id.take() {
            response.headers_mut().insert(REQUEST_ID, id);
        }
        Poll::Ready(Ok(response))
    }
}
