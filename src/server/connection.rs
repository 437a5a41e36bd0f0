//! One client connection: its TLS handshake, HTTP/1.1 or HTTP/2 as ALPN
//! chose, and the timeouts that keep a slow, silent or idle client from
//! holding it (and its slot under `max_connections`) forever.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::DRAIN_TIMEOUT;
use crate::config::ServerConfig;
use crate::policy::ClientAddr;

/// Serves one accepted connection until it ends, the hub stops, or it
/// outstays a timeout; `_slot` is its place under `max_connections`,
/// given back when this returns.
pub(super) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    limits: ServerConfig,
    mut stopped: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let _open = Open::count();
    let _ = tcp.set_nodelay(true);
    let tls = tokio::select! {
        handshake = tokio::time::timeout(limits.handshake_timeout(), acceptor.accept(tcp)) => {
            match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    closed("handshake_timeout");
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            }
        }
        _ = stopped.changed() => return,
    };
    let protocol = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let in_flight = activity.begin();
            request.extensions_mut().insert(ClientAddr(peer));
            let response = app.clone().oneshot(request);
            async move {
                let response = response.await?;
                Ok::<_, Infallible>(response.map(|body| Tracked {
                    body,
                    _in_flight: in_flight,
                }))
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout());
    builder.http2().timer(TokioTimer::new());
    // ALPN already said which protocol this is: no sniffing of the first
    // bytes, which would wait on a slow client before any timeout runs.
    let builder = match protocol.as_deref() {
        Some(b"h2") => builder.http2_only(),
        Some(b"http/1.1") => builder.http1_only(),
        _ => builder,
    };
    let connection = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    // Once asked to close (the hub stops, or the connection idles), it gets
    // until then to finish what is in flight; then it is dropped.
    let mut close_by: Option<Instant> = None;
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    let timed_out = e
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    if timed_out {
                        closed("header_timeout");
                    }
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stopped.changed(), if close_by.is_none() => {
                connection.as_mut().graceful_shutdown();
                close_by = Some(Instant::now() + DRAIN_TIMEOUT);
            }
            _ = activity.idle(limits.idle_timeout()), if close_by.is_none() => {
                closed("idle");
                tracing::debug!(%peer, "closing an idle connection");
                connection.as_mut().graceful_shutdown();
                // Nothing is in flight: a peer that does not let go
                // (HTTP/2 waits for its PING answer) is not waited for long.
                close_by = Some(Instant::now() + limits.idle_timeout().min(DRAIN_TIMEOUT));
            }
            _ = tokio::time::sleep_until(close_by.unwrap_or_else(Instant::now)), if close_by.is_some() => {
                tracing::debug!(%peer, "connection dropped: it did not close in time");
                return;
            }
        }
    }
}

/// Counts a connection closed by the hub, by why.
fn closed(reason: &'static str) {
    metrics::counter!("acmehub_connections_closed_total", "reason" => reason).increment(1);
}

/// One open connection on the `acmehub_connections_open` gauge.
struct Open;

impl Open {
    fn count() -> Self {
        metrics::gauge!("acmehub_connections_open").increment(1.0);
        Self
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!("acmehub_connections_open").decrement(1.0);
    }
}

/// Whether a connection has requests in flight, and since when it has had
/// none.
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `born` when the last request ended.
    quiet_since: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            quiet_since: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Resolves once the connection has had no request in flight for `after`.
    async fn idle(&self, after: Duration) {
        loop {
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(after).await;
                continue;
            }
            let quiet_since =
                self.born + Duration::from_millis(self.quiet_since.load(Ordering::SeqCst));
            let until = quiet_since + after;
            if Instant::now() >= until {
                return;
            }
            tokio::time::sleep_until(until).await;
        }
    }
}

/// A request between its arrival and the end of its answer's body (or
/// until hyper drops either, when the client goes away).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = u64::try_from(activity.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.quiet_since.store(now, Ordering::SeqCst);
        activity.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An answer's body that keeps its request in flight until it is sent.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
