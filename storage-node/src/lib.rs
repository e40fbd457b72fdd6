//! dmpstore storage node: keeps chunks and metadata partitions in RocksDB and serves them over
//! the authenticated internal RPC.
//!
//! - [`config`]: the node's typed configuration file.
//! - [`store`]: the RocksDB layout (column families, key and value formats) and every disk
//!   operation; the only module that touches RocksDB.
//! - [`logging`]: the log set-up both binaries share.
//! - [`server`]: the RPC listener: authentication, framing, and one `match` over requests.
//!
//! Entry point for embedding (the gateway's dev cluster, tests): [`server::run`].

pub mod config;
pub mod detector;
pub mod logging;
pub mod metrics;
pub mod peers;
pub mod repair;
pub mod server;
pub mod store;
