//! Mutation fuzzing of every decoder of bytes that arrive from the network or the disk: RPC
//! frames (requests and responses), metadata records, cluster maps and chunk homes (index
//! values). Each case starts from a valid encoding and applies random byte flips, truncations,
//! insertions and overwrites, so the decoders are driven past their version checks into the
//! message bodies, which random bytes alone rarely reach. A decoder must return (an error or a
//! value), never panic or allocate without bound. Bounded: `PROPTEST_CASES` cases per target
//! (default 256 here, about a second each); raise it for a longer run, e.g.
//! `PROPTEST_CASES=200000 cargo test --release -p dmpstore-common --test decoders`.

use bytes::Bytes;
use dmpstore_common::cluster::{ClusterMap, NodeInfo};
use dmpstore_common::ids::{ChunkIdx, ChunkKey, Hlc, NodeId, StripeIdx, VersionId};
use dmpstore_common::record::{
    BucketAccess, BucketRecord, ErasureData, MetaValue, ObjectData, ObjectRecord, PartData,
    PartRecord, Versioned, Versioning,
};
use dmpstore_common::rpc::{
    decode_frame, encode_frame, ChunkHome, ErrorKind, LeaseCheck, RecordRef, Request, Response,
};
use dmpstore_common::stripe::StripeLayout;
use proptest::prelude::*;

/// One edit of an encoding.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Overwrite { at: usize, bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        // Large varints: the classic way to ask a decoder for a huge allocation.
        (any::<usize>(), Just(vec![0xFF, 0xFF, 0xFF, 0xFF, 0x0F]))
            .prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Mutation]) -> Vec<u8> {
    for m in edits {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip { at, mask } => {
                if !bytes.is_empty() {
                    let i = at % bytes.len();
                    bytes[i] ^= mask;
                }
            }
            Mutation::Truncate { at } => bytes.truncate(at % len),
            Mutation::Insert { at, bytes: b } => {
                let i = at % (bytes.len() + 1);
                bytes.splice(i..i, b.iter().copied());
            }
            Mutation::Overwrite { at, bytes: b } => {
                let i = at % len;
                for (j, &x) in b.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(i + j) {
                        *slot = x;
                    }
                }
            }
        }
    }
    bytes
}

fn layout() -> StripeLayout {
    StripeLayout {
        k: 4,
        m: 2,
        chunk_size_bytes: 262_144,
    }
}

fn erasure() -> ErasureData {
    ErasureData {
        version: VersionId([7; 16]),
        layout: layout(),
        placement: vec![
            Some(NodeId(1)),
            None,
            Some(NodeId(3)),
            Some(NodeId(4)),
            Some(NodeId(5)),
            Some(NodeId(6)),
        ],
    }
}

fn records() -> Vec<MetaValue> {
    let object = |data| {
        MetaValue::Object(ObjectRecord {
            size_bytes: 123_456,
            etag: "0123456789abcdef0123456789abcdef-2".into(),
            content_type: Some("application/x-parquet".into()),
            user_metadata: vec![("owner".into(), "segments".into())],
            last_modified_ms: 1_700_000_000_000,
            data,
            checksum: None,
            tags: vec![("team".into(), "dmp".into())],
            version_id: Some("00000000000000000000000a".into()),
        })
    };
    let part = PartData {
        size_bytes: 5 << 20,
        etag: "0123456789abcdef0123456789abcdef".into(),
        data: ObjectData::Erasure(erasure()),
    };
    vec![
        object(ObjectData::Inline(b"a small profile".to_vec())),
        object(ObjectData::Erasure(erasure())),
        object(ObjectData::Multipart(vec![part.clone(), part.clone()])),
        MetaValue::Part(PartRecord {
            part_number: 3,
            last_modified_ms: 5,
            part,
        }),
        MetaValue::Bucket(BucketRecord {
            created_ms: 9,
            versioning: Versioning::Suspended,
            access: BucketAccess::new_bucket("alice"),
        }),
        MetaValue::Tombstone { deleted_ms: 77 },
    ]
}

fn home() -> ChunkHome {
    ChunkHome {
        layout: layout(),
        placement: erasure().placement,
        record: Some(RecordRef {
            partition: "segments".into(),
            key: "2026/11/part-0000.parquet".into(),
        }),
    }
}

fn map() -> ClusterMap {
    let nodes = (1..=6)
        .map(|i| NodeInfo {
            id: NodeId(i),
            addr: format!("127.0.0.1:{}", 7000 + i),
            zone: format!("zone-{}", i % 3),
            weight: 1,
        })
        .collect();
    ClusterMap::new(3, nodes).expect("a valid map")
}

fn requests() -> Vec<Request> {
    let key = ChunkKey {
        version: VersionId([3; 16]),
        stripe_idx: StripeIdx(7),
        chunk_idx: ChunkIdx(5),
    };
    vec![
        Request::PutChunk {
            key,
            checksum: [9; 32],
            home: Some(home()),
        },
        Request::GetChunk { key },
        Request::MetaPut {
            partition: "b".into(),
            key: "k".into(),
            record: Versioned {
                hlc: Hlc(99),
                value: records()[1].encode(),
            },
            expect: Some(Hlc(98)),
            lease: LeaseCheck::Holder([7; 16]),
        },
        Request::MetaScan {
            partition: "b#versions".into(),
            prefix: "a/".into(),
            start_after: vec![0xFF, 1],
            limit: 1000,
            bodies: false,
        },
        Request::MetaLock {
            partition: "b".into(),
            key: "k".into(),
            token: [1; 16],
            ttl_ms: 10_000,
        },
        Request::SetClusterMap { map: map() },
        Request::Heartbeat {
            from: NodeId(2),
            map_version: 4,
        },
    ]
}

fn responses() -> Vec<Response> {
    vec![
        Response::MetaPut {
            applied: false,
            replaced: None,
            holds: Some(Hlc(5)),
        },
        Response::MetaValue(Some(Versioned {
            hlc: Hlc(1),
            value: records()[0].encode(),
        })),
        Response::MetaEntries {
            entries: records()
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    (
                        format!("key-{i}"),
                        Versioned {
                            hlc: Hlc(i as u64),
                            value: r.encode(),
                        },
                    )
                })
                .collect(),
            more: true,
        },
        Response::ClusterMap(map()),
        Response::Error {
            kind: ErrorKind::ClockOffset,
            message: "ahead".into(),
        },
    ]
}

proptest! {
    #[test]
    fn mutated_request_frames_never_panic(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec(mutation(), 1..6),
    ) {
        let all = requests();
        let req = which.get(&all);
        let frame = apply(encode_frame(req, b"payload").to_vec(), &edits);
        let _ = decode_frame::<Request>(Bytes::from(frame));
    }

    #[test]
    fn mutated_response_frames_never_panic(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec(mutation(), 1..6),
    ) {
        let all = responses();
        let frame = apply(encode_frame(which.get(&all), b"").to_vec(), &edits);
        let _ = decode_frame::<Response>(Bytes::from(frame));
    }

    #[test]
    fn mutated_records_never_panic(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec(mutation(), 1..6),
    ) {
        let all = records();
        let bytes = apply(which.get(&all).encode(), &edits);
        let _ = MetaValue::decode(&bytes);
        let _ = dmpstore_common::record::without_inline_body(&bytes);
    }

    #[test]
    fn mutated_cluster_maps_and_chunk_homes_never_panic(
        edits in proptest::collection::vec(mutation(), 1..6),
    ) {
        let _ = ClusterMap::decode(&apply(map().encode(), &edits));
        let _ = ChunkHome::decode(&apply(home().encode(), &edits));
    }
}

#[test]
fn the_seeds_decode_before_mutation() {
    // The fuzzers start from valid encodings: a seed that does not decode would test nothing.
    for r in requests() {
        let (back, _): (Request, Bytes) = decode_frame(encode_frame(&r, b"")).unwrap();
        assert_eq!(back, r);
    }
    for r in responses() {
        let (back, _): (Response, Bytes) = decode_frame(encode_frame(&r, b"")).unwrap();
        assert_eq!(back, r);
    }
    for r in records() {
        assert_eq!(MetaValue::decode(&r.encode()).unwrap(), r);
    }
    assert_eq!(ClusterMap::decode(&map().encode()).unwrap().version, 3);
    assert_eq!(ChunkHome::decode(&home().encode()).unwrap(), home());
}

/// Every input the coverage-guided fuzzers (`scripts/fuzz.sh`) ever found a crash with is kept
/// in `common/fuzz/regressions/TARGET/` and replayed here through the same decoder, together
/// with the valid seeds.
#[test]
fn fuzz_regressions_and_seeds_replay() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let seeds: [(&str, Vec<Vec<u8>>); 5] = [
        (
            "rpc_request",
            requests()
                .iter()
                .map(|r| encode_frame(r, b"x").to_vec())
                .collect(),
        ),
        (
            "rpc_response",
            responses()
                .iter()
                .map(|r| encode_frame(r, b"").to_vec())
                .collect(),
        ),
        ("record", records().iter().map(MetaValue::encode).collect()),
        ("cluster_map", vec![map().encode()]),
        ("chunk_home", vec![home().encode()]),
    ];
    let mut replayed = 0;
    for (target, valid) in seeds {
        let mut inputs = valid;
        if let Ok(entries) = std::fs::read_dir(dir.join(target)) {
            for e in entries {
                let path = e.unwrap().path();
                if path.is_file() {
                    inputs.push(std::fs::read(path).unwrap());
                }
            }
        }
        for bytes in inputs {
            match target {
                "rpc_request" => drop(decode_frame::<Request>(Bytes::from(bytes))),
                "rpc_response" => drop(decode_frame::<Response>(Bytes::from(bytes))),
                "record" => {
                    let _ = MetaValue::decode(&bytes);
                    let _ = dmpstore_common::record::without_inline_body(&bytes);
                }
                "cluster_map" => drop(ClusterMap::decode(&bytes)),
                _ => drop(ChunkHome::decode(&bytes)),
            }
            replayed += 1;
        }
    }
    assert!(replayed >= 5, "the seeds themselves are replayed");
}
