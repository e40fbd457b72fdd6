//! Chunk homes (index values) as read from RocksDB: decoding never panics, and a
//! home that decodes re-encodes stably.
#![no_main]
use dmpstore_common::rpc::ChunkHome;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(home) = ChunkHome::decode(data) {
        let again = home.encode();
        let back = ChunkHome::decode(&again).expect("re-encoded home decodes");
        assert_eq!(back.encode(), again, "re-encoding is stable");
    }
});
