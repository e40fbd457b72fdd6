//! The S3 endpoint: builds the s3s service over [`DmpS3`] with SigV4 authentication and serves
//! it on a listener, over TLS when the config has `[tls]`, until shutdown; then waits for
//! in-flight requests and background tasks.
//!
//! Limits against slow or abusive clients (`[limits]`): a connection past `max_connections`
//! is accepted and closed at once; a TLS handshake and every request head must complete
//! within the header read timeout (which also closes idle kept-alive connections); a request
//! past `max_requests_in_flight` gets 503 SlowDown; a stalled body, 400 RequestTimeout
//! (`http_limits`).

use crate::auth::KeyRing;
use crate::authz::{Authorizer, Peer};
use crate::config::GatewayConfig;
use crate::console::Console;
use crate::host::VirtualHosts;
use crate::http_limits::{IdleTimeoutBody, PermitBody};
use crate::s3::DmpS3;
use crate::state::GatewayState;
use anyhow::Context;
use dmpstore_common::limits::{ACCEPT_ERROR_BACKOFF, MAX_S3_HEADER_BYTES, TLS_CERT_CHECK_INTERVAL};
use dmpstore_common::rpc::Request;
use dmpstore_storage_node::health;
use dmpstore_storage_node::tls::ReloadingCert;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use s3s::service::{S3Service, S3ServiceBuilder};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A node counts toward readiness if it answered a health probe (every 500 ms) this recently.
const READY_PROBE_FRESHNESS: Duration = Duration::from_secs(3);

/// Serves S3 on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    config: GatewayConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_console(listener, None, config, shutdown).await
}

/// [`run`], and the web console on `console` if given (over TLS when S3 is).
pub async fn run_with_console(
    listener: TcpListener,
    console: Option<TcpListener>,
    config: GatewayConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Before anything else: a missing or mismatched certificate is a start-up error.
    let cert = match &config.tls {
        Some(tls) => Some(
            ReloadingCert::load(&tls.cert_path, &tls.key_path)
                .context("load the S3 endpoint's TLS certificate")?,
        ),
        None => None,
    };
    let tls = match &cert {
        Some(cert) => Some(TlsAcceptor::from(cert.server_config()?)),
        None => None,
    };
    let state = Arc::new(GatewayState::new(config)?);
    let background = TaskTracker::new();
    background.spawn(state.nodes.clone().probe_health_until(shutdown.clone()));
    background.spawn(report_availability(
        state.clone(),
        listener.local_addr()?.to_string(),
        shutdown.clone(),
    ));
    background.spawn(crate::lifecycle::run_worker(
        state.clone(),
        shutdown.clone(),
    ));
    if let Some(cert) = cert {
        background.spawn(cert.watch(TLS_CERT_CHECK_INTERVAL, shutdown.clone()));
    }
    if let Some(rpc) = &state.rpc_tls {
        background.spawn(
            rpc.cert
                .clone()
                .watch(TLS_CERT_CHECK_INTERVAL, shutdown.clone()),
        );
    }
    let listen = Listen {
        s3: s3_service(&state),
        http: http_builder(&state.config),
        tls,
        in_flight: Arc::new(Semaphore::new(state.config.limits.max_requests_in_flight)),
        state: state.clone(),
        console: None,
    };
    let console = match console {
        Some(l) => {
            let c = Arc::new(Console::new(state.clone(), listen.tls.is_some()));
            background.spawn(c.clone().sample_rates(shutdown.clone()));
            tracing::info!(addr = %l.local_addr()?, "gateway serving the web console");
            Some((
                l,
                Listen {
                    console: Some(c),
                    ..listen.clone()
                },
            ))
        }
        None => None,
    };
    let scheme = if listen.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(addr = %listener.local_addr()?, scheme, nodes = state.nodes.map().len(), "gateway serving S3");

    let graceful = GracefulShutdown::new();
    let conns = TaskTracker::new();
    let open = Arc::new(Semaphore::new(state.config.limits.max_connections));
    let accepting = Accepting {
        conns: &conns,
        open: &open,
        graceful: &graceful,
        shutdown: &shutdown,
    };
    let console_loop = async {
        if let Some((l, listen)) = &console {
            accepting.run(l, listen).await;
        }
    };
    tokio::join!(accepting.run(&listener, &listen), console_loop);
    drop(console);
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

/// What the accept loops of the S3 and console listeners share.
#[derive(Clone, Copy)]
struct Accepting<'a> {
    conns: &'a TaskTracker,
    open: &'a Arc<Semaphore>,
    graceful: &'a GracefulShutdown,
    shutdown: &'a CancellationToken,
}

impl Accepting<'_> {
    /// Accepts connections on `listener` until shutdown, each under the connection cap.
    async fn run(self, listener: &TcpListener, listen: &Listen) {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                        continue;
                    }
                },
                () = self.shutdown.cancelled() => return,
            };
            let Ok(permit) = self.open.clone().try_acquire_owned() else {
                listen.state.metrics.connections_refused.inc();
                drop(stream);
                continue;
            };
            self.conns.spawn(listen.clone().connection(
                stream,
                peer,
                permit,
                self.graceful.watcher(),
            ));
        }
    }
}

fn s3_service(state: &Arc<GatewayState>) -> S3Service {
    let mut builder = S3ServiceBuilder::new(DmpS3::new(state.clone()));
    builder.set_auth(KeyRing::new(state.clone()));
    builder.set_access(Authorizer::new(state.clone()));
    if !state.config.virtual_host_domains.is_empty() {
        builder.set_host(VirtualHosts::new(&state.config.virtual_host_domains));
    }
    builder.build()
}

fn http_builder(config: &GatewayConfig) -> hyper::server::conn::http1::Builder {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(MAX_S3_HEADER_BYTES)
        .timer(TokioTimer::new())
        .header_read_timeout(config.limits.header_read_timeout());
    http
}

/// What every connection of the listener shares.
#[derive(Clone)]
struct Listen {
    s3: S3Service,
    http: hyper::server::conn::http1::Builder,
    tls: Option<TlsAcceptor>,
    in_flight: Arc<Semaphore>,
    state: Arc<GatewayState>,
    /// Set on the console's listener: its requests go to the console, not to S3.
    console: Option<Arc<Console>>,
}

impl Listen {
    /// Serves one accepted connection (after its TLS handshake, if any) until it closes;
    /// `_open` is its place under the connection cap.
    async fn connection(
        self,
        stream: TcpStream,
        peer: std::net::SocketAddr,
        _open: OwnedSemaphorePermit,
        watcher: Watcher,
    ) {
        let _ = stream.set_nodelay(true);
        let metrics = &self.state.metrics;
        metrics.connections_open.inc();
        let served = match self.tls.clone() {
            None => {
                self.serve(
                    stream,
                    Peer {
                        addr: peer,
                        tls: false,
                    },
                    watcher,
                )
                .await
            }
            Some(acceptor) => {
                let deadline = self.state.config.limits.header_read_timeout();
                match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let peer = Peer {
                            addr: peer,
                            tls: true,
                        };
                        self.serve(tls, peer, watcher).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        Ok(())
                    }
                    Err(_) => {
                        metrics.connections_timed_out.inc();
                        Ok(())
                    }
                }
            }
        };
        if let Err(e) = served {
            if e.is_timeout() {
                metrics.connections_timed_out.inc();
            }
            tracing::debug!(error = %e, "S3 connection ended with an error");
        }
        metrics.connections_open.dec();
    }

    /// Serves `io`, each request marked with where it came from (for authorization's
    /// `aws:SourceIp` and `aws:SecureTransport`).
    async fn serve<IO>(&self, io: IO, peer: Peer, watcher: Watcher) -> Result<(), hyper::Error>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let this = self.clone();
        let service = hyper::service::service_fn(move |mut req: http::Request<_>| {
            req.extensions_mut().insert(peer);
            this.clone().request(req)
        });
        let conn = self.http.serve_connection(TokioIo::new(io), service);
        watcher.watch(conn).await
    }

    /// One request: a health probe, a metrics scrape, or an S3 request under the in-flight
    /// cap.
    async fn request(
        self,
        req: http::Request<hyper::body::Incoming>,
    ) -> Result<http::Response<s3s::Body>, s3s::HttpError> {
        let state = &self.state;
        if let Some(console) = &self.console {
            let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                state.metrics.requests_refused.inc();
                return Ok(crate::error::slow_down());
            };
            let idle = state.config.limits.body_idle_timeout();
            let req = req.map(|body| s3s::Body::http_body(IdleTimeoutBody::new(body, idle)));
            let response = console.handle(req).await;
            return Ok(response.map(|body| PermitBody::wrap(body, permit)));
        }
        if let Some(probe) = health::probe(&req) {
            let (status, text) = health::answer(
                match probe {
                    health::Probe::Live => Ok(()),
                    health::Probe::Ready => readiness(state),
                },
                probe,
            );
            let mut r = http::Response::new(s3s::Body::from(text));
            *r.status_mut() = status;
            return Ok(r);
        }
        if crate::metrics::is_scrape(&req) {
            let text = state.metrics.render(&state.nodes, &state.meta);
            let mut r = http::Response::new(s3s::Body::from(text));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return Ok(r);
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            state.metrics.requests_refused.inc();
            return Ok(crate::error::slow_down());
        };
        let method = req.method().as_str().to_string();
        let started = std::time::Instant::now();
        let idle = state.config.limits.body_idle_timeout();
        let req = req.map(|body| s3s::Body::http_body(IdleTimeoutBody::new(body, idle)));
        let response = crate::buckets::request_scope(self.s3.call(req)).await;
        let status = response.as_ref().map_or(500, |r| r.status().as_u16());
        state
            .metrics
            .observe_request(&method, status, started.elapsed().as_secs_f64());
        response.map(|r| r.map(|body| PermitBody::wrap(body, permit)))
    }
}

/// Whether this gateway can serve now: at most `m` nodes fail its health probes (every
/// partition keeps a majority, every stripe `k` chunks), and its clock is within bounds of
/// theirs (else it refuses writes).
fn readiness(state: &GatewayState) -> Result<(), String> {
    let total = state.nodes.map().len();
    let answering = state.nodes.answering(READY_PROBE_FRESHNESS);
    health::quorum(answering, total, usize::from(state.layout.m))?;
    if let Some(offset) = state.nodes.clock_offset_ms() {
        if offset.unsigned_abs() > state.config.max_clock_offset_ms {
            return Err(format!(
                "this gateway's clock is {offset} ms from the nodes' (at most {} ms allowed)",
                state.config.max_clock_offset_ms
            ));
        }
    }
    Ok(())
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
