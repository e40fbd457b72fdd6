//! RPC response frames as a gateway or peer receives them: decoding never panics, and a frame
//! that decodes re-encodes to one that decodes to the same response.
#![no_main]
use bytes::Bytes;
use dmpstore_common::rpc::{decode_frame, encode_frame, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((response, payload)) = decode_frame::<Response>(Bytes::copy_from_slice(data)) {
        let again = encode_frame(&response, &payload);
        let (back, back_payload) =
            decode_frame::<Response>(again.clone()).expect("re-encoded frame decodes");
        assert_eq!(
            encode_frame(&back, &back_payload),
            again,
            "re-encoding is stable"
        );
    }
});
