//! dmpstore storage node: keeps chunks and metadata partitions in RocksDB and serves them over
//! the authenticated internal RPC.
//!
//! - [`config`]: the node's typed configuration file.
//! - [`store`]: the RocksDB layout (column families, key and value formats) and every disk
//!   operation; the only module that touches RocksDB.
//! - [`logging`]: the log set-up both binaries share.
//! - [`peers`]: the RPC client of the nodes (pooled, with deadlines, Up/Down view, clock
//!   offset estimates), used by nodes and gateways.
//! - [`meta_client`]: the one metadata quorum client (write order, read write-back, scans),
//!   used by nodes and gateways.
//! - [`detector`]: the failure detector's state and judgement (Up, Suspect, Down; T_FD).
//! - [`workers`]: the background work, one worker per concern over a shared context:
//!   heartbeats, repair scanner, repair worker (rebuild and heal), scrub, garbage collection,
//!   anti-entropy, orphan scan, drain sweep.
//! - [`health`]: the liveness and readiness probes' rules (`/health/live`, `/health/ready`).
//! - [`disk`]: free space on the data disk and the read-only state a full disk puts the node in.
//! - [`supervisor`]: runs the background workers and restarts one that panics.
//! - [`metrics`]: the node's Prometheus registry.
//! - [`tls`]: TLS material from PEM files (checked, reloaded when the files change) and the
//!   rustls configs built over it, the S3 endpoint's and the internal RPC's (mutual TLS).
//! - [`pki`]: the cluster CA that signs every node's and gateway's RPC certificate.
//! - [`server`]: the RPC listener: authentication, framing, and one `match` over requests.
//!
//! Entry point for embedding (the gateway's dev cluster, tests): [`server::run`].

pub mod config;
pub mod detector;
pub mod disk;
pub mod health;
pub mod logging;
pub mod meta_client;
pub mod metrics;
pub mod peers;
pub mod pki;
pub mod server;
pub mod store;
pub mod supervisor;
pub mod tls;
pub mod workers;
