//! Every limit of the system in one place. Relations between limits are checked at compile
//! time, so changing one number cannot silently break another.

use std::time::Duration;

/// Largest Reed-Solomon profile accepted: `k + m` chunks must index into a `u8`, and placement
/// needs that many nodes.
pub const MAX_DATA_CHUNKS: usize = 16;
pub const MAX_PARITY_CHUNKS: usize = 8;

/// Default erasure profile RS(4,2) with 256 KiB chunks (1 MiB stripes), DESIGN 3.
pub const DEFAULT_DATA_CHUNKS: usize = 4;
pub const DEFAULT_PARITY_CHUNKS: usize = 2;
pub const DEFAULT_CHUNK_SIZE_BYTES: usize = 256 * 1024;
pub const MIN_CHUNK_SIZE_BYTES: usize = 4 * 1024;
pub const MAX_CHUNK_SIZE_BYTES: usize = 4 * 1024 * 1024;

/// Objects at or under this size are stored inline in their metadata record (DESIGN 6).
pub const DEFAULT_INLINE_MAX_BYTES: usize = 16 * 1024;
pub const MAX_INLINE_MAX_BYTES: usize = 256 * 1024;

/// Largest single PUT body (S3's own limit).
pub const MAX_PUT_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// Multipart uploads (S3's limits): parts per upload, and the minimum size of every part but
/// the last.
pub const MAX_PARTS: usize = 10_000;
pub const MIN_PART_SIZE_BYTES: u64 = 5 * 1024 * 1024;
/// Keys one DeleteObjects request may name.
pub const MAX_DELETE_OBJECTS_KEYS: usize = 1000;
/// Concurrent deletions one DeleteObjects request runs.
pub const DELETE_OBJECTS_CONCURRENCY: usize = 16;

/// How often a gateway sends its P_HA counts to the nodes, and how many gateways' reports a
/// node keeps.
pub const GATEWAY_REPORT_INTERVAL: Duration = Duration::from_secs(5);
pub const MAX_GATEWAY_REPORTS: usize = 1024;

/// Failures (peers declared Down) a node remembers for status: T_FD, T_FR and T_RT per failure.
pub const FAILURE_HISTORY: usize = 16;

/// How long a read waits for the data chunks it asked for before it fetches parity around the
/// slow ones and reconstructs (DESIGN 9): well above a chunk read's time on a busy node, far
/// below the RPC deadline a hung node would otherwise cost.
pub const READ_HEDGE_AFTER: Duration = Duration::from_secs(1);

/// How long a client's metadata write that cannot reach a quorum still waits for the answers
/// of the other replicas before it decides whether it may go above a newer version (ADR
/// 0004): the refusals that settle it usually come at once; a hung replica is not waited for.
pub const WRITE_SETTLE_GRACE: Duration = Duration::from_millis(500);

/// Object tags (S3's limits).
pub const MAX_TAGS: usize = 10;
pub const MAX_TAG_KEY_CHARS: usize = 128;
pub const MAX_TAG_VALUE_CHARS: usize = 256;

/// How long a gateway trusts what it read about an access key: a key disabled, deleted or
/// expired stops working everywhere within this time.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Access keys a gateway keeps in its cache.
pub const KEY_CACHE_ENTRIES: usize = 10_000;
/// Largest bucket policy (AWS: 20 KiB).
pub const MAX_BUCKET_POLICY_BYTES: usize = 20 * 1024;
/// Grants in one ACL (AWS: 100).
pub const MAX_ACL_GRANTS: usize = 100;

/// Stripes a single PUT encodes and writes concurrently; bounds gateway memory per PUT to
/// roughly `(PUT_STRIPES_IN_FLIGHT + 1) * stripe * (k + m) / k`.
pub const PUT_STRIPES_IN_FLIGHT: usize = 3;
/// Stripes a single GET fetches ahead of the one being sent.
pub const GET_STRIPES_PREFETCH: usize = 2;

/// How long the chunks of a replaced or deleted version outlive its record, so a GET that was
/// already streaming that version can finish. Abandoned at shutdown (GC reclaims them).
pub const REPLACED_DATA_GRACE: Duration = Duration::from_secs(30);

/// Lease a conditional write holds on a key while it checks and commits, and how long it tries
/// to win a majority of leases before answering 409 ConditionalRequestConflict.
pub const CONDITIONAL_LEASE_TTL: Duration = Duration::from_secs(10);
pub const CONDITIONAL_LOCK_PATIENCE: Duration = Duration::from_secs(3);

/// How long DeleteBucket may take (it holds the bucket's lease this long), and after which a
/// deletion whose gateway died is rolled back by the next writer (ADR 0005).
pub const BUCKET_DELETE_TTL: Duration = Duration::from_secs(60);
/// How long a write into a bucket that is being deleted waits for the outcome before it
/// answers 503.
pub const BUCKET_DELETE_PATIENCE: Duration = Duration::from_secs(20);

/// Deadline of one internal RPC.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for opening a TCP connection to a node.
pub const RPC_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest RPC message header (the typed part of a request or response, without payload).
pub const MAX_RPC_HEADER_BYTES: usize = 4 * 1024 * 1024;
/// Largest RPC body: one chunk plus its header, or one metadata page.
pub const MAX_RPC_BODY_BYTES: usize = MAX_CHUNK_SIZE_BYTES + MAX_RPC_HEADER_BYTES + 4;

/// Entries a metadata scan returns at most per RPC.
pub const MAX_SCAN_ENTRIES: u32 = 1000;
/// Bytes (keys plus records) after which a node ends a scan page (DESIGN 16): a page is at
/// most this plus one entry, whatever the records hold.
pub const MAX_SCAN_PAGE_BYTES: usize = 256 * 1024;
/// Largest object key (S3's limit, in bytes).
pub const MAX_KEY_BYTES: usize = 1024;
/// Keys a LIST returns at most per page (S3 caps at 1000).
pub const MAX_LIST_KEYS: usize = 1000;
/// Largest metadata record value accepted by a node: an inline object at the largest
/// `inline_max`, or the part list of a 10,000-part object (about 75 bytes a part when the
/// parts are erasure-coded, their size plus some 45 when they are inline).
pub const MAX_RECORD_BYTES: usize = 2 * 1024 * 1024;

/// Default largest clock offset between processes (DESIGN 15): a gateway whose clock is off
/// from the nodes' by more refuses writes, and a node refuses a record stamped further than
/// this in its future.
pub const DEFAULT_MAX_CLOCK_OFFSET: Duration = Duration::from_millis(500);
/// How long a clock-offset measurement stays valid; older ones count as unknown.
pub const CLOCK_OFFSET_STALE_AFTER: Duration = Duration::from_secs(10);
/// Attempts of a client's metadata write that found a newer version on a replica before it
/// gives up with 503 (each goes above the newest version learned).
pub const META_WRITE_ATTEMPTS: usize = 8;

/// How often the gateway probes node health, and how long a probe may take.
pub const HEALTH_PROBE_INTERVAL: Duration = Duration::from_millis(500);
pub const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Largest HTTP header section the S3 endpoint accepts.
pub const MAX_S3_HEADER_BYTES: usize = 64 * 1024;

/// Default time a client has to send a complete request head, counted from the accepted
/// connection (TLS handshake included) or from the end of the previous response on a
/// kept-alive one: it cuts off slowloris clients and also closes idle keep-alive connections
/// (hyper runs one timer for both). Spark's S3A pool re-checks connections idle for over 2 s,
/// so it reconnects instead of failing on one closed here.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a request body may send nothing while the gateway waits for it; past it the
/// request fails with 400 RequestTimeout (S3 itself gives about 20 s).
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on open S3 connections per gateway; past it a new connection is accepted and
/// closed at once. Spark executors keep up to a few hundred each (`fs.s3a.connection.maximum`).
pub const DEFAULT_MAX_S3_CONNECTIONS: usize = 4096;
/// Default cap on S3 requests in flight per gateway (from the request head to the end of the
/// response body); past it a request is answered 503 SlowDown at once.
pub const DEFAULT_MAX_S3_REQUESTS_IN_FLIGHT: usize = 512;
/// Pause after a failed `accept` (out of file descriptors, say), so the accept loop does not
/// spin while the condition lasts.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// How often the gateway checks its TLS certificate and key files for a new version.
pub const TLS_CERT_CHECK_INTERVAL: Duration = Duration::from_secs(2);

const _: () = assert!(DEFAULT_DATA_CHUNKS + DEFAULT_PARITY_CHUNKS <= u8::MAX as usize);
const _: () = assert!(MAX_DATA_CHUNKS + MAX_PARITY_CHUNKS <= u8::MAX as usize);
const _: () = assert!(DEFAULT_DATA_CHUNKS <= MAX_DATA_CHUNKS);
const _: () = assert!(DEFAULT_PARITY_CHUNKS <= MAX_PARITY_CHUNKS);
const _: () = assert!(DEFAULT_CHUNK_SIZE_BYTES >= MIN_CHUNK_SIZE_BYTES);
const _: () = assert!(DEFAULT_CHUNK_SIZE_BYTES <= MAX_CHUNK_SIZE_BYTES);
// An inline object must be decidable from the first stripe's buffer alone.
const _: () = assert!(MAX_INLINE_MAX_BYTES < MIN_CHUNK_SIZE_BYTES * 2 * 64);
const _: () = assert!(DEFAULT_INLINE_MAX_BYTES < DEFAULT_CHUNK_SIZE_BYTES * DEFAULT_DATA_CHUNKS);
const _: () = assert!(MAX_RECORD_BYTES > MAX_INLINE_MAX_BYTES);
const _: () = assert!(MAX_RPC_BODY_BYTES > MAX_CHUNK_SIZE_BYTES);
const _: () = assert!(MAX_LIST_KEYS <= MAX_SCAN_ENTRIES as usize);
// A scan page (its byte budget, one entry over it, and framing) fits in one RPC header.
const _: () =
    assert!(MAX_SCAN_PAGE_BYTES + MAX_RECORD_BYTES + MAX_KEY_BYTES + 4096 < MAX_RPC_HEADER_BYTES);
// One HTTP/1.1 connection carries one request at a time.
const _: () = assert!(DEFAULT_MAX_S3_REQUESTS_IN_FLIGHT <= DEFAULT_MAX_S3_CONNECTIONS);
// PUT buffers of every request in flight at the default profile stay under 4 GiB.
const _: () = assert!(
    DEFAULT_MAX_S3_REQUESTS_IN_FLIGHT
        * (PUT_STRIPES_IN_FLIGHT + 1)
        * DEFAULT_CHUNK_SIZE_BYTES
        * (DEFAULT_DATA_CHUNKS + DEFAULT_PARITY_CHUNKS)
        <= 4 << 30
);
// A request head must have time to cross a congested link; a body stall that short is no
// client's normal pause.
const _: () = assert!(DEFAULT_HEADER_READ_TIMEOUT.as_secs() >= 5);
const _: () = assert!(DEFAULT_BODY_IDLE_TIMEOUT.as_secs() >= 5);
const _: () = assert!(READ_HEDGE_AFTER.as_millis() * 5 <= RPC_TIMEOUT.as_millis());
