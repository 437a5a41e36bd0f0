//! Request bodies at the listener: one limit per family of routes, the same
//! for every handler, and the same answer when it is passed. A body the hub
//! will not read is still read and thrown away (within bounds) before the
//! connection moves on, because a client that is still writing when the
//! hub stops reading gets a reset instead of the answer (RFC 9112 §9.6:
//! close only after the rest of the request has been read).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, SizeHint};

use crate::error::{Error, ErrorKind};
use crate::hub::Hub;

/// Most bytes of a refused or unread body read and thrown away so that its
/// client gets the answer; past them the connection is closed instead.
const DISCARD_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Most time spent throwing a body away.
const DISCARD_WITHIN: Duration = Duration::from_secs(10);

/// Holds every request body to its route's limit and to the body read
/// timeout, and answers a request that passes either itself: 413 (or 400
/// for a body too slow) as a problem document on the ACME routes and as
/// the admin API's JSON error elsewhere, whatever the handler made of it.
pub(super) async fn guard(State(hub): State<Arc<Hub>>, request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let path = request.uri().path().to_string();
    let limit = limit_for(&hub, &path);
    if declared_length(request.headers()).is_some_and(|n| n > limit as u64) {
        // A client waiting for 100 Continue has sent nothing yet: the body
        // is left unread, and hyper closes the connection after the answer.
        let waits = expects_continue(request.headers());
        if !waits {
            discard(request.into_body());
        }
        return refuse(&hub, &path, Refusal::TooLarge(limit));
    }
    let outcome = Arc::new(Outcome::default());
    let timeout = hub.config.server.body_read_timeout();
    let request = request.map(|body| {
        Body::new(Guarded {
            inner: Some(body),
            seen: 0,
            limit,
            timeout,
            deadline: None,
            outcome: outcome.clone(),
            done: false,
        })
    });
    let response = next.run(request).await;
    match outcome.0.load(Ordering::Acquire) {
        TOO_LARGE => refuse(&hub, &path, Refusal::TooLarge(limit)),
        TOO_SLOW => refuse(&hub, &path, Refusal::TooSlow(timeout)),
        _ => response,
    }
}

/// The limit of a path's family: ACME's, the console's forms', or the
/// listener's own for the rest (admin API, acme-dns, httpreq).
fn limit_for(hub: &Hub, path: &str) -> usize {
    if path.starts_with("/acme/") {
        hub.config.acme.max_body_bytes
    } else if let Some(limit) = crate::ui::form_limit(path) {
        limit
    } else {
        hub.config.server.max_body_bytes
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

enum Refusal {
    TooLarge(usize),
    TooSlow(Duration),
}

fn refuse(hub: &Hub, path: &str, refusal: Refusal) -> Response {
    let (reason, error) = match refusal {
        Refusal::TooLarge(limit) => (
            "too_large",
            Error::new(
                ErrorKind::PayloadTooLarge,
                format!("the request body is larger than {limit} bytes"),
            ),
        ),
        Refusal::TooSlow(within) => (
            "too_slow",
            Error::malformed(format!(
                "the request body did not arrive within {} s",
                within.as_secs()
            )),
        ),
    };
    metrics::counter!("acmehub_http_bodies_refused_total", "reason" => reason).increment(1);
    tracing::debug!(path, reason, "request body refused");
    if path.starts_with("/acme/") {
        crate::acme::refusal(hub, path, error)
    } else {
        crate::admin::ApiError::Hub(error).into_response()
    }
}

const TOO_LARGE: u8 = 1;
const TOO_SLOW: u8 = 2;

/// What a guarded body came to, for the answer: 0, [`TOO_LARGE`] or
/// [`TOO_SLOW`].
#[derive(Default)]
struct Outcome(AtomicU8);

/// A request body held to a limit in bytes and in time.
struct Guarded {
    inner: Option<Body>,
    seen: usize,
    limit: usize,
    timeout: Duration,
    /// Set at the first read: a handler may rightly wait before reading.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    outcome: Arc<Outcome>,
    /// Read to its end, broken, or given up on: nothing left to throw away.
    done: bool,
}

impl Guarded {
    fn fail(&mut self, outcome: u8) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.outcome.0.store(outcome, Ordering::Release);
        let why = if outcome == TOO_LARGE {
            "the request body is over the limit"
        } else {
            "the request body is too slow"
        };
        Poll::Ready(Some(Err(axum::Error::new(why))))
    }
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.outcome.0.load(Ordering::Acquire) != 0 {
            return Poll::Ready(None);
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.seen += frame.data_ref().map_or(0, Bytes::len);
                if this.seen > this.limit {
                    // The rest is thrown away when the handler drops the body.
                    return this.fail(TOO_LARGE);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => {
                this.done = true;
                Poll::Ready(other)
            }
            Poll::Pending => {
                if deadline.as_mut().poll(cx).is_ready() {
                    // Not worth waiting for the rest: the connection closes.
                    this.done = true;
                    return this.fail(TOO_SLOW);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(body) = self.inner.take()
            && !self.done
            && !body.is_end_stream()
        {
            discard(body);
        }
    }
}

/// Reads what is left of `body` and throws it away, up to
/// [`DISCARD_MAX_BYTES`] and [`DISCARD_WITHIN`]. While a task holds the
/// body, hyper keeps reading it off the connection (HTTP/1.1) or keeps the
/// stream's window open (HTTP/2) instead of closing or resetting under the
/// client's feet.
fn discard(mut body: Body) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let reading = async {
            let mut left = DISCARD_MAX_BYTES;
            while let Some(Ok(frame)) = body.frame().await {
                let size = frame.data_ref().map_or(0, Bytes::len);
                match left.checked_sub(size) {
                    Some(rest) => left = rest,
                    None => break,
                }
            }
        };
        let _ = tokio::time::timeout(DISCARD_WITHIN, reading).await;
    });
}
