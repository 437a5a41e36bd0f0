//! The HTTPS listener: router assembly, a tokio-rustls accept loop in front
//! of axum, operational endpoints and graceful shutdown. What one client may
//! take (connections, time, body bytes) is bounded here, by `[server]`.

mod body;
mod connection;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::bootstrap::HubError;
use crate::hub::{DEFAULT_INSTANCE, Hub};

/// Time in-flight requests get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The whole HTTP application.
pub fn app(hub: Arc<Hub>) -> Router {
    let (admin, _) = crate::admin::router();
    let max_body = hub.config.server.max_body_bytes;
    crate::acme::router(hub.clone())
        .merge(admin)
        .merge(crate::challenge_api::router())
        .merge(crate::ui::router())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // axum's own limit (2 MiB unless a router sets one) behind the
        // guard's, so that a larger `max_body_bytes` means what it says.
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            body::guard,
        ))
        .route_layer(axum::middleware::from_fn(track))
        .with_state(hub)
}

async fn readyz(State(hub): State<Arc<Hub>>) -> Response {
    // A database that does not answer within two seconds is as good as
    // gone to a load balancer's health check.
    let why = match tokio::time::timeout(Duration::from_secs(2), hub.store.ping()).await {
        Ok(Ok(())) => return (StatusCode::OK, "ready").into_response(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "the database did not answer within 2 s".to_string(),
    };
    tracing::warn!(error = %why, "readiness check failed");
    (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
}

async fn metrics() -> Response {
    match crate::telemetry::prometheus() {
        Some(handle) => handle.render().into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response(),
    }
}

/// Counts requests by route and status and times them.
async fn track(request: axum::extract::Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("acmehub_http_requests_total", "endpoint" => endpoint.clone(), "method" => method, "status" => status).increment(1);
    metrics::histogram!("acmehub_http_request_duration_seconds", "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A running listener.
pub struct Server {
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds the configured listen address.
    pub async fn bind(listen: SocketAddr) -> Result<TcpListener, HubError> {
        TcpListener::bind(listen)
            .await
            .map_err(|e| HubError::Setup(format!("cannot listen on {listen}: {e}")))
    }

    /// Resumes interrupted work and starts serving on `listener`.
    pub async fn start(hub: Arc<Hub>, listener: TcpListener) -> Result<Server, HubError> {
        crate::telemetry::prometheus();
        let tls = crate::bootstrap::tls_config(&hub)?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| HubError::Setup(format!("listener address: {e}")))?;
        // A SQLite store belongs to this one process: leases left by a
        // process that died are void, and its relayed orders resume now
        // rather than when the leases lapse.
        if hub.store.backend() == crate::store::Backend::Sqlite {
            hub.store
                .release_all_leases()
                .await
                .map_err(|e| HubError::Setup(format!("releasing stale leases: {e}")))?;
        }
        crate::orders::resume(&hub)
            .await
            .map_err(|e| HubError::Setup(format!("resuming interrupted work: {}", e.detail)))?;
        let (stop, stopped) = watch::channel(false);
        crate::jobs::spawn_all(hub.clone(), stopped.clone());
        let app = app(hub.clone());
        let task = tokio::spawn(serve(
            listener,
            TlsAcceptor::from(Arc::new(tls)),
            app,
            hub.config.server.clone(),
            stopped,
        ));
        tracing::info!(
            listen = %local_addr,
            directory = %hub.directory_url(DEFAULT_INSTANCE),
            root = %hub.config.data_dir.join("ca").join("root.pem").display(),
            "acmehub is serving"
        );
        Ok(Server {
            local_addr,
            stop,
            task,
        })
    }

    /// Stops accepting, lets in-flight requests finish, and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    limits: crate::config::ServerConfig,
    mut stopped: watch::Receiver<bool>,
) {
    let capacity = limits.max_connections;
    // One slot per connection, from accept to close.
    let slots = Arc::new(Semaphore::new(capacity));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Over the cap a connection is closed at once, before its
                // handshake costs anything: the clients already in keep
                // their service, and a newcomer can try again.
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    metrics::counter!("acmehub_connections_refused_total").increment(1);
                    tracing::debug!(%peer, max_connections = capacity, "connection refused: the hub is full");
                    continue;
                };
                tokio::spawn(connection::serve(
                    tcp,
                    peer,
                    acceptor.clone(),
                    app.clone(),
                    limits.clone(),
                    stopped.clone(),
                    slot,
                ));
            }
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    // Every connection gives its slot back when it has closed, which each
    // does within the drain timeout of the stop: all slots back, all done.
    let all = u32::try_from(capacity).unwrap_or(u32::MAX);
    let backstop = DRAIN_TIMEOUT + Duration::from_secs(1);
    if tokio::time::timeout(backstop, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within the drain timeout");
    }
}
