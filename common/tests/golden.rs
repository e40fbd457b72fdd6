//! Golden files of the internal RPC and of metadata records (ADR 0010), in
//! `common/tests/golden/`: one sample of every message and record variant as this build
//! encodes it, in files named after their format version (`rpc-v8.txt`, `records-v3.txt`).
//!
//! Every later build must decode every file here to the same values, and encode those values
//! to the same bytes, so a process of the next release and one of this release understand each
//! other during a rolling upgrade. A file is never rewritten: `DMPSTORE_BLESS_GOLDEN=1` only
//! adds the samples a file lacks (a new variant) or writes the file of a new version.

use dmpstore_common::availability::Served;
use dmpstore_common::cluster::{ClusterMap, NodeInfo, NodeState};
use dmpstore_common::ids::{ChunkIdx, ChunkKey, Hlc, NodeId, StripeIdx, VersionId};
use dmpstore_common::lifecycle::{LifecycleConfiguration, LifecycleRule, RuleStatus};
use dmpstore_common::record::*;
use dmpstore_common::rpc::*;
use dmpstore_common::stripe::StripeLayout;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// `name -> hex` of a golden file, in file order.
fn read_golden(name: &str) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(golden_dir().join(name)) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (n, h) = l.split_once(' ').expect("`name hex` lines");
            (n.to_string(), h.trim().to_string())
        })
        .collect()
}

/// Checks `samples` against the golden file `file`: each encodes to its golden bytes and the
/// golden bytes decode to it. Samples missing from the file are added when blessing.
fn check<T: PartialEq + std::fmt::Debug>(
    file: &str,
    samples: Vec<(&str, T)>,
    encode: impl Fn(&T) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> T,
) {
    let golden: BTreeMap<String, String> = read_golden(file).into_iter().collect();
    let bless = std::env::var_os("DMPSTORE_BLESS_GOLDEN").is_some();
    let mut added = String::new();
    for (name, value) in &samples {
        let bytes = encode(value);
        match golden.get(*name) {
            Some(hex_text) => {
                let old = hex::decode(hex_text).expect("golden hex");
                assert_eq!(
                    decode(&old),
                    *value,
                    "{file} {name}: golden bytes decode to something else"
                );
                assert_eq!(
                    hex::encode(&bytes),
                    *hex_text,
                    "{file} {name}: this build encodes the value differently from the golden file"
                );
            }
            None if bless => added.push_str(&format!("{name} {}\n", hex::encode(&bytes))),
            None => panic!(
                "{file} has no sample {name}: a new variant needs its golden sample (DMPSTORE_BLESS_GOLDEN=1)"
            ),
        }
    }
    let names: Vec<&str> = samples.iter().map(|(n, _)| *n).collect();
    for name in golden.keys() {
        assert!(
            names.contains(&name.as_str()),
            "{file} {name}: a golden sample this build no longer checks"
        );
    }
    if !added.is_empty() {
        use std::io::Write;
        let path = golden_dir().join(file);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open golden file");
        f.write_all(added.as_bytes())
            .expect("append golden samples");
    }
}

fn versioned() -> Versioned {
    Versioned {
        hlc: Hlc(0x0123_4567_89ab_cdef),
        value: vec![3, 1, 2, 3],
    }
}

fn map() -> ClusterMap {
    let nodes = (1..=3)
        .map(|i| NodeInfo {
            id: NodeId(i),
            addr: format!("10.0.0.{i}:7000"),
            zone: format!("z{i}"),
            weight: 1,
        })
        .collect();
    ClusterMap::new(4, nodes).expect("valid map")
}

fn chunk_key() -> ChunkKey {
    ChunkKey {
        version: VersionId([7; 16]),
        stripe_idx: StripeIdx(2),
        chunk_idx: ChunkIdx(5),
    }
}

fn layout() -> StripeLayout {
    StripeLayout {
        k: 4,
        m: 2,
        chunk_size_bytes: 262_144,
    }
}

fn requests() -> Vec<(&'static str, Request)> {
    let pk = |p: &str, k: &str| (p.to_string(), k.to_string());
    let (partition, key) = pk("events", "2026/12/07/part-0000.parquet");
    vec![
        (
            "PutChunk",
            Request::PutChunk {
                key: chunk_key(),
                checksum: [9; 32],
                home: Some(ChunkHome {
                    layout: layout(),
                    placement: vec![Some(NodeId(1)), None, Some(NodeId(3))],
                    record: Some(RecordRef {
                        partition: partition.clone(),
                        key: key.clone(),
                    }),
                }),
            },
        ),
        ("GetChunk", Request::GetChunk { key: chunk_key() }),
        (
            "DeleteChunks",
            Request::DeleteChunks {
                version: VersionId([1; 16]),
            },
        ),
        (
            "MetaPut",
            Request::MetaPut {
                partition: partition.clone(),
                key: key.clone(),
                record: versioned(),
                expect: Some(Hlc(5)),
                lease: LeaseCheck::Holder([4; 16]),
            },
        ),
        (
            "MetaGet",
            Request::MetaGet {
                partition: partition.clone(),
                key: key.clone(),
            },
        ),
        (
            "MetaPurge",
            Request::MetaPurge {
                partition: partition.clone(),
                key: key.clone(),
                record: versioned(),
            },
        ),
        (
            "MetaScan",
            Request::MetaScan {
                partition: partition.clone(),
                prefix: "2026/".into(),
                start_after: b"2026/11".to_vec(),
                limit: 1000,
                bodies: false,
            },
        ),
        (
            "MetaLock",
            Request::MetaLock {
                partition: partition.clone(),
                key: key.clone(),
                token: [8; 16],
                ttl_ms: 10_000,
            },
        ),
        (
            "MetaUnlock",
            Request::MetaUnlock {
                partition: partition.clone(),
                key: key.clone(),
                token: [8; 16],
            },
        ),
        (
            "Heartbeat",
            Request::Heartbeat {
                from: NodeId(2),
                map_version: 4,
            },
        ),
        ("Health", Request::Health),
        ("Status", Request::Status),
        (
            "RepairEnqueue",
            Request::RepairEnqueue {
                partition: partition.clone(),
                key: key.clone(),
            },
        ),
        ("RepairScan", Request::RepairScan { node: NodeId(3) }),
        ("Scrub", Request::Scrub),
        ("AntiEntropy", Request::AntiEntropy),
        (
            "Drain",
            Request::Drain {
                node: NodeId(3),
                draining: true,
            },
        ),
        ("Isolate", Request::Isolate { millis: 1500 }),
        (
            "DropMovedChunk",
            Request::DropMovedChunk {
                version: VersionId([2; 16]),
                chunk_idx: 1,
                partition,
                key,
            },
        ),
        ("GetClusterMap", Request::GetClusterMap),
        ("SetClusterMap", Request::SetClusterMap { map: map() }),
        (
            "GatewayReport",
            Request::GatewayReport(GatewayAvailability {
                gateway: "10.0.1.1:9000".into(),
                last_hour: Served {
                    requests: 100,
                    failed: 1,
                },
                last_day: Served {
                    requests: 2400,
                    failed: 3,
                },
                sent_ms: 1_796_000_000_000,
            }),
        ),
    ]
}

fn node_status() -> NodeStatus {
    NodeStatus {
        node_id: NodeId(1),
        uptime_ms: 60_000,
        n_chunks_estimate: 1234,
        peers: vec![PeerView {
            node_id: NodeId(2),
            state: NodeState::Suspect,
            last_heartbeat_ms_ago: Some(2500),
        }],
        repair: RepairStatus {
            queued: 3,
            eta_s: Some(12),
            dead: vec![NodeId(3)],
            failures: vec![FailureRecord {
                node: NodeId(3),
                down_at_ms: 1_796_000_000_000,
                t_fd_ms: 6000,
                back_after_ms: None,
                t_fr_ms: Some(40_000),
            }],
            parked: ParkedRepairs {
                count: 1,
                first: vec![("events".into(), "k".into())],
            },
            ..Default::default()
        },
        workers: vec![WorkerReport {
            name: "scrub".into(),
            restarts: 1,
            last_panic: Some("boom".into()),
            status: "idle".into(),
        }],
        gateways: Vec::new(),
        disk: DiskReport {
            read_only: false,
            free_bytes: 1 << 30,
            total_bytes: 1 << 34,
            reserve_bytes: 1 << 28,
            read_only_episodes: 0,
        },
    }
}

fn responses() -> Vec<(&'static str, Response)> {
    vec![
        ("Done", Response::Done),
        ("Chunk", Response::Chunk { checksum: [6; 32] }),
        ("Purged", Response::Purged(true)),
        (
            "MetaPut",
            Response::MetaPut {
                applied: false,
                replaced: Some(versioned()),
                holds: Some(Hlc(99)),
            },
        ),
        ("MetaValue", Response::MetaValue(Some(versioned()))),
        (
            "MetaEntries",
            Response::MetaEntries {
                entries: vec![("a".into(), versioned())],
                more: true,
            },
        ),
        (
            "Health",
            Response::Health(HealthReport {
                node_id: NodeId(1),
                uptime_ms: 5,
                n_chunks_estimate: 6,
                draining: vec![NodeId(2)],
                map_version: 4,
                wall_ms: 1_796_000_000_000,
                read_only: true,
            }),
        ),
        ("Lock", Response::Lock { granted: true }),
        ("Status", Response::Status(Box::new(node_status()))),
        ("ClusterMap", Response::ClusterMap(map())),
        (
            "Error",
            Response::Error {
                kind: ErrorKind::Leased,
                message: "held".into(),
            },
        ),
    ]
}

fn object() -> ObjectRecord {
    ObjectRecord {
        size_bytes: 5_000_000,
        etag: "0123456789abcdef0123456789abcdef-2".into(),
        content_type: Some("application/vnd.apache.parquet".into()),
        user_metadata: vec![("job".into(), "daily".into())],
        last_modified_ms: 1_796_000_000_000,
        data: ObjectData::Multipart(vec![
            PartData {
                size_bytes: 4_000_000,
                etag: "aa".into(),
                data: ObjectData::Erasure(ErasureData {
                    version: VersionId([5; 16]),
                    layout: layout(),
                    placement: vec![Some(NodeId(1)), Some(NodeId(2)), None],
                }),
            },
            PartData {
                size_bytes: 1_000_000,
                etag: "bb".into(),
                data: ObjectData::Inline(vec![1, 2, 3]),
            },
        ]),
        checksum: Some(ObjectChecksum {
            algorithm: ChecksumAlgorithm::Crc32c,
            value: "AAAAAA==".into(),
        }),
        tags: vec![("class".into(), "scratch".into())],
        version_id: Some("0123456789abcdef01234567".into()),
    }
}

fn bucket() -> BucketRecord {
    BucketRecord {
        created_ms: 1_796_000_000_000,
        versioning: Versioning::Enabled,
        access: BucketAccess {
            owner: "alice".into(),
            policy: Some("{\"Version\":\"2012-10-17\",\"Statement\":[]}".into()),
            acl: vec![AclGrant {
                grantee: Grantee::User("bob".into()),
                permission: Permission::Read,
            }],
            ownership: ObjectOwnership::BucketOwnerPreferred,
            public_access_block: Some(PublicAccessBlock::all()),
        },
    }
}

fn records() -> Vec<(&'static str, MetaValue)> {
    let rules: LifecycleConfiguration = serde_json::from_str(
        r#"{"Rules":[{"ID":"logs","Status":"Enabled","Filter":{"And":{"Prefix":"logs/","Tags":[{"Key":"t","Value":"x"}],"ObjectSizeGreaterThan":10}},"Expiration":{"Date":"2027-01-01T00:00:00Z"},"NoncurrentVersionExpiration":{"NoncurrentDays":7,"NewerNoncurrentVersions":2}},{"Status":"Disabled","Prefix":"tmp/","AbortIncompleteMultipartUpload":{"DaysAfterInitiation":1}}]}"#,
    )
    .expect("rules");
    assert!(matches!(
        rules.rules[1],
        LifecycleRule {
            status: RuleStatus::Disabled,
            ..
        }
    ));
    vec![
        ("Bucket", MetaValue::Bucket(bucket())),
        ("Object", MetaValue::Object(object())),
        ("Tombstone", MetaValue::Tombstone { deleted_ms: 7 }),
        (
            "Upload",
            MetaValue::Upload(UploadRecord {
                key: "big.parquet".into(),
                initiated_ms: 1_796_000_000_000,
                content_type: None,
                user_metadata: Vec::new(),
                tags: vec![("a".into(), "b".into())],
            }),
        ),
        (
            "Part",
            MetaValue::Part(PartRecord {
                part_number: 10_000,
                last_modified_ms: 1_796_000_000_000,
                part: PartData {
                    size_bytes: 3,
                    etag: "cc".into(),
                    data: ObjectData::Inline(vec![4, 5, 6]),
                },
            }),
        ),
        ("Tags", MetaValue::Tags(vec![("k".into(), "v".into())])),
        (
            "DeleteMarker",
            MetaValue::DeleteMarker(DeleteMarker {
                version_id: None,
                deleted_ms: 9,
            }),
        ),
        (
            "DeletingBucket",
            MetaValue::DeletingBucket(DeletingBucket {
                bucket: bucket(),
                since_ms: 11,
            }),
        ),
        (
            "User",
            MetaValue::User(UserRecord {
                name: "alice".into(),
                created_ms: 12,
            }),
        ),
        (
            "AccessKey",
            MetaValue::AccessKey(AccessKeyRecord {
                user: "alice".into(),
                secret_key: "s3cr3t".into(),
                created_ms: 13,
                disabled: true,
                expires_ms: Some(14),
                scope: KeyScope {
                    read_only: true,
                    prefixes: vec!["events/2026".into()],
                },
            }),
        ),
        (
            "ObjectAcl",
            MetaValue::ObjectAcl(vec![AclGrant {
                grantee: Grantee::AllUsers,
                permission: Permission::Read,
            }]),
        ),
        (
            "LifecycleRules",
            MetaValue::LifecycleRules(LifecycleRecord {
                bucket_created_ms: 15,
                configuration: rules,
            }),
        ),
        (
            "LifecycleProgress",
            MetaValue::LifecycleProgress(LifecycleProgress {
                bucket_created_ms: 15,
                passes: 3,
                pass_started_ms: Some(16),
                last_pass_end_ms: Some(17),
                in_uploads: true,
                cursor: b"logs/x".to_vec(),
                scanned: 100,
                expired: 10,
                noncurrent_expired: 2,
                markers_removed: 1,
                uploads_aborted: 4,
            }),
        ),
    ]
}

#[test]
fn rpc_messages_match_their_golden_frames() {
    let file = format!("rpc-v{RPC_PROTOCOL_VERSION}.txt");
    check(
        &file,
        requests(),
        |r| encode_frame(r, b"payload").to_vec(),
        |b| {
            let (r, payload) = decode_frame::<Request>(bytes::Bytes::copy_from_slice(b))
                .expect("golden request decodes");
            assert_eq!(&payload[..], b"payload");
            r
        },
    );
    check(
        &format!("rpc-responses-v{RPC_PROTOCOL_VERSION}.txt"),
        responses(),
        |r| encode_frame(r, b"").to_vec(),
        |b| {
            decode_frame::<Response>(bytes::Bytes::copy_from_slice(b))
                .expect("golden response decodes")
                .0
        },
    );
}

#[test]
fn records_match_their_golden_encodings() {
    check(
        &format!("records-v{RECORD_FORMAT_VERSION}.txt"),
        records(),
        MetaValue::encode,
        |b| MetaValue::decode(b).expect("golden record decodes"),
    );
}

/// Every golden file of an older format still decodes: a build reads what every release it
/// can meet in a cluster wrote.
#[test]
fn every_golden_file_of_a_supported_version_decodes() {
    let mut files = 0;
    for entry in std::fs::read_dir(golden_dir()).expect("golden dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        let version: u16 = name
            .trim_end_matches(".txt")
            .rsplit_once("-v")
            .and_then(|(_, v)| v.parse().ok())
            .expect("files are named KIND-vN.txt");
        for (sample, hex_text) in read_golden(&name) {
            let bytes = hex::decode(&hex_text).expect("hex");
            let decoded = if name.starts_with("records-") {
                MetaValue::decode(&bytes)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else if name.starts_with("rpc-responses-") {
                decode_frame::<Response>(bytes.into())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                decode_frame::<Request>(bytes.into())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            let supported = if name.starts_with("records-") {
                version >= 2
            } else {
                version >= RPC_MIN_PROTOCOL_VERSION
            };
            if supported {
                decoded.unwrap_or_else(|e| panic!("{name} {sample}: {e}"));
            }
        }
        files += 1;
    }
    assert!(files >= 3, "the golden files are missing");
}

#[test]
fn frames_of_versions_outside_the_supported_range_are_refused() {
    let mut frame = encode_frame(&Request::Health, b"").to_vec();
    // The envelope's version is the header's first field (a postcard varint after the length).
    for bad in [RPC_MIN_PROTOCOL_VERSION - 1, RPC_PROTOCOL_VERSION + 1] {
        assert!(bad < 128, "one-byte varint");
        frame[4] = bad as u8;
        match decode_frame::<Request>(frame.clone().into()) {
            Err(FrameError::Version(v)) => assert_eq!(v, bad),
            other => panic!("version {bad} accepted: {other:?}"),
        }
    }
}
