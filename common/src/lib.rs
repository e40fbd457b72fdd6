//! dmpstore's pure core and wire contract, shared by the gateway and the storage nodes.
//!
//! Nothing here touches the disk, reads the environment or keeps globals: every function is a
//! pure computation over its arguments (the quorum primitive only drives futures it is given).
//!
//! - [`availability`]: P_HA, the share of requests served, per minute over a day.
//! - [`ids`]: newtypes for node ids, chunk and stripe indexes, versions and clocks.
//! - [`limits`]: every size, count and deadline in one place, with their relations asserted.
//! - [`stripe`]: all stripe arithmetic (object bytes -> stripes -> chunks).
//! - [`codec`]: the Reed-Solomon erasure codec behind one small interface.
//! - [`placement`]: zone-aware rendezvous hashing for chunks and metadata replicas.
//! - [`cluster`]: the versioned cluster map.
//! - [`hlc`]: the hybrid logical clock that orders metadata versions.
//! - [`lifecycle`]: lifecycle rules, their validation and what they decide for one version.
//! - [`record`]: metadata records (buckets, objects, tombstones) and their encoding.
//! - [`redundancy`]: how far a piece is below full redundancy, and why (the census).
//! - [`rpc`]: the typed, versioned messages of the internal node RPC and their framing.
//! - [`quorum`]: the one quorum primitive used for every replicated call.
//! - [`targets`]: where a version's chunks should be: repair and rebalance targets.

pub mod availability;
pub mod cluster;
pub mod codec;
pub mod durability;
pub mod hlc;
pub mod ids;
pub mod lifecycle;
pub mod limits;
pub mod placement;
pub mod quorum;
pub mod record;
pub mod redundancy;
pub mod rpc;
pub mod stripe;
pub mod targets;
