//! Cluster maps as persisted by nodes and sent between them: decoding never panics, and a
//! map that decodes re-encodes stably.
#![no_main]
use dmpstore_common::cluster::ClusterMap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(map) = ClusterMap::decode(data) {
        let again = map.encode();
        let back = ClusterMap::decode(&again).expect("re-encoded map decodes");
        assert_eq!(back.encode(), again, "re-encoding is stable");
    }
});
