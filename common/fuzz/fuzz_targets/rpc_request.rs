//! RPC request frames as a storage node receives them: decoding never panics, and a frame
//! that decodes re-encodes to one that decodes to the same request.
#![no_main]
use bytes::Bytes;
use dmpstore_common::rpc::{decode_frame, encode_frame, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((request, payload)) = decode_frame::<Request>(Bytes::copy_from_slice(data)) {
        let again = encode_frame(&request, &payload);
        let (back, back_payload) =
            decode_frame::<Request>(again.clone()).expect("re-encoded frame decodes");
        assert_eq!(
            encode_frame(&back, &back_payload),
            again,
            "re-encoding is stable"
        );
    }
});
