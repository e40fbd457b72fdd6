//! dmpstore gateway: speaks S3 to clients and drives the read and write paths over the
//! storage nodes.
//!
//! Entry points: [`server::run`] (serve S3 on a listener) and [`dev::run`] (the embedded
//! single-machine cluster). The S3 operations, in the order a request meets them:
//!
//! - [`s3`]: the `s3s` trait impl; translates S3 types to and from the paths below.
//! - [`put`]: the write path: body -> stripes -> encode -> place -> write chunks -> commit.
//! - [`get`]: the read path: record -> stripes in range -> data chunks, or parity + decode.
//! - [`list`]: listing with prefixes, delimiters and cursors over merged partition scans.
//! - [`versions`]: bucket versioning: version records, delete markers, deletes by version id,
//!   ListObjectVersions; every commit and delete goes through it.
//! - [`multipart`]: multipart uploads: parts stored as they arrive, Complete writes one record.
//! - [`copy`]: CopyObject and UploadPartCopy, keeping the source's ETag.
//! - [`preconditions`]: conditional reads and writes.
//! - [`tagging`]: object tags, kept per object version.
//! - [`checksum`]: `x-amz-checksum-*` verification (headers and aws-chunked trailers).
//! - [`buckets`]: bucket records.
//! - [`lifecycle`]: lifecycle configurations and the worker that applies them.
//! - [`reclaim`]: freeing replaced and deleted data, after a grace and a re-check.
//! - [`meta`]: typed metadata reads, writes and scans over the shared quorum client, and the
//!   per-key leases of conditional writes.
//! - [`nodes`]: the RPC client of the storage nodes and the gateway's view of who is up.
//! - [`state`]: what all requests share.
//! - [`error`]: the gateway's errors and the one place they become S3 errors.
//! - [`auth`]: access keys for SigV4 verification.
//! - [`iam`]: users and access keys stored in the cluster, and the config's administrators.
//! - [`authz`]: authorization of every request (owners, key scopes, policies, ACLs).
//! - [`policy`]: bucket policies and ACLs: parsing, validation, evaluation (pure).
//! - [`host`]: virtual-hosted-style addressing.
//! - [`server`]: the S3 listener (plain or TLS) and its connection limits;
//!   [`http_limits`]: the per-request ones (in-flight cap, body idle timeout).
//! - [`console`]: the web console's page and JSON API, on its own listener.
//! - [`config`]: the typed configuration.

pub mod admin;
pub mod auth;
pub mod authz;
pub mod buckets;
pub mod checksum;
pub mod config;
pub mod console;
pub mod copy;
pub mod dev;
pub mod error;
pub mod get;
pub mod host;
pub mod http_limits;
pub mod iam;
pub mod lifecycle;
pub mod list;
pub mod meta;
pub mod metrics;
pub mod multipart;
pub use dmpstore_storage_node::peers as nodes;
pub mod policy;
pub mod preconditions;
pub mod put;
pub mod reclaim;
pub mod s3;
pub mod server;
pub mod state;
pub mod tagging;
pub mod versions;
