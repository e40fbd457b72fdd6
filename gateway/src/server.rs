//! The S3 endpoint: builds the s3s service over [`DmpS3`] with SigV4 authentication and serves
//! it on a listener until shutdown, then waits for in-flight requests and background tasks.

use crate::auth::KeyRing;
use crate::authz::{Authorizer, Peer};
use crate::config::GatewayConfig;
use crate::host::VirtualHosts;
use crate::s3::DmpS3;
use crate::state::GatewayState;
use dmpstore_common::limits::MAX_S3_HEADER_BYTES;
use dmpstore_common::rpc::Request;
use hyper_util::rt::TokioIo;
use s3s::service::S3ServiceBuilder;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves S3 on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    config: GatewayConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = Arc::new(GatewayState::new(config)?);
    let background = TaskTracker::new();
    background.spawn(state.nodes.clone().probe_health_until(shutdown.clone()));
    background.spawn(report_availability(
        state.clone(),
        listener.local_addr()?.to_string(),
        shutdown.clone(),
    ));

    let mut builder = S3ServiceBuilder::new(DmpS3::new(state.clone()));
    builder.set_auth(KeyRing::new(state.clone()));
    builder.set_access(Authorizer::new(state.clone()));
    if !state.config.virtual_host_domains.is_empty() {
        builder.set_host(VirtualHosts::new(&state.config.virtual_host_domains));
    }
    let s3 = builder.build();
    let metered = state.clone();
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (s3, state) = (s3.clone(), metered.clone());
        async move {
            if crate::metrics::is_scrape(&req) {
                let text = state.metrics.render(&state.nodes, &state.meta);
                let mut r = http::Response::new(s3s::Body::from(text));
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                return Ok(r);
            }
            let method = req.method().as_str().to_string();
            let started = std::time::Instant::now();
            let response = hyper::service::Service::call(&s3, req).await;
            let status = response.as_ref().map_or(500, |r| r.status().as_u16());
            state
                .metrics
                .observe_request(&method, status, started.elapsed().as_secs_f64());
            response
        }
    });
    tracing::info!(addr = %listener.local_addr()?, nodes = state.nodes.map().len(), "gateway serving S3");

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let conns = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = hyper::server::conn::http1::Builder::new()
            .max_buf_size(MAX_S3_HEADER_BYTES)
            .serve_connection(
                TokioIo::new(stream),
                with_peer(service.clone(), peer, false),
            );
        let conn = graceful.watch(conn);
        conns.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "S3 connection ended with an error");
            }
        });
    }
    drop(listener);
    state.shutdown.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight S3 requests did not finish within the shutdown grace");
    }
    conns.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, conns.wait())
        .await
        .is_err()
    {
        tracing::warn!("S3 connections still open after the shutdown grace");
    }
    state.tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not finish within the shutdown grace");
    }
    background.close();
    background.wait().await;
    tracing::info!("gateway stopped");
    Ok(())
}

/// `service`, with each request marked with where it came from (for authorization's
/// `aws:SourceIp` and `aws:SecureTransport`).
fn with_peer<S>(
    service: S,
    addr: std::net::SocketAddr,
    tls: bool,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = S::Response,
    Error = S::Error,
    Future = S::Future,
> + Clone
where
    S: hyper::service::Service<http::Request<hyper::body::Incoming>> + Clone,
{
    WithPeer {
        inner: service,
        peer: Peer { addr, tls },
    }
}

#[derive(Clone)]
struct WithPeer<S> {
    inner: S,
    peer: Peer,
}

impl<S> hyper::service::Service<http::Request<hyper::body::Incoming>> for WithPeer<S>
where
    S: hyper::service::Service<http::Request<hyper::body::Incoming>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut req: http::Request<hyper::body::Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.peer);
        self.inner.call(req)
    }
}

/// Sends this gateway's P_HA counts to every node now and then, so that `gateway admin
/// status` can show every gateway's availability (best effort: a node that misses one gets
/// the next).
async fn report_availability(state: Arc<GatewayState>, name: String, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(dmpstore_common::limits::GATEWAY_REPORT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let request = Request::GatewayReport(state.metrics.availability_report(&name));
        let map = state.nodes.map();
        futures::future::join_all(map.nodes().map(|n| {
            let request = &request;
            let state = &state;
            async move {
                if let Err(e) = state.nodes.call(n.id, request, bytes::Bytes::new()).await {
                    tracing::debug!(node = %n.id, error = %e, "availability report not delivered");
                }
            }
        }))
        .await;
    }
}
