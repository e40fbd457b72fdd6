//! Range and condition headers as S3 clients send them, parsed by the same s3s functions the
//! gateway uses (`Range::parse` and `check` behind `get::resolve_range`, the ETag condition
//! and HTTP-date parsers behind `preconditions`): parsing never panics, and a range that
//! parses resolves to a non-empty range inside the object or to "not satisfiable".
#![no_main]
use libfuzzer_sys::fuzz_target;
use s3s::dto::{ETagCondition, Range, Timestamp, TimestampFormat};

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes choose an object size, the rest is the header value.
    let (size, header) = match data.split_first_chunk::<8>() {
        Some((size, rest)) => (u64::from_le_bytes(*size) >> (size[0] % 64), rest),
        None => (0, data),
    };
    let _ = ETagCondition::parse_http_header(header);
    let Ok(text) = std::str::from_utf8(header) else {
        return;
    };
    let _ = Timestamp::parse(TimestampFormat::HttpDate, text);
    if let Ok(range) = Range::parse(text) {
        if let Ok(r) = range.check(size) {
            // Empty only for an empty object (which `get::resolve_range` sends whole).
            assert!(
                r.end <= size && (r.start < r.end || size == 0),
                "{text:?} on {size} bytes gave {r:?}"
            );
        }
    }
});
