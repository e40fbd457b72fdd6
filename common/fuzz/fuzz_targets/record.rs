//! Metadata records as read from RocksDB or a replica: decoding never panics, a record that
//! decodes round-trips, and stripping inline bodies (listings) never panics either.
#![no_main]
use dmpstore_common::record::{without_inline_body, MetaValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = MetaValue::decode(data) {
        assert_eq!(
            MetaValue::decode(&value.encode()).ok(),
            Some(value),
            "round trip"
        );
    }
    let stripped = without_inline_body(data);
    assert!(stripped.len() <= data.len(), "stripping never adds bytes");
});
