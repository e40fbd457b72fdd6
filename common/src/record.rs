//! Metadata records: what a metadata partition stores for a bucket or an object key, and their
//! versioned binary encoding (DESIGN 5, 6, 14). Storage nodes never look inside a record: they
//! order records by the [`Hlc`] that travels beside it.

use crate::ids::{Hlc, NodeId, VersionId};
use crate::stripe::StripeLayout;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Format version of an encoded [`MetaValue`]; the first byte of every record. Version 3 added
/// [`BucketAccess`] to bucket records; records of version 2 still decode ([`v2`]).
pub const RECORD_FORMAT_VERSION: u8 = 3;

/// Partition holding one record per bucket (keyed by bucket name). Bucket names cannot be
/// empty, so this never collides with a bucket's own partition.
pub const BUCKETS_PARTITION: &str = "";

/// Partition of users and access keys ([`user_key`], [`access_key_key`]). Bucket names cannot
/// hold `#`, so this never collides with a bucket's partitions.
pub const IAM_PARTITION: &str = "#iam";

/// Key of a user's record in the [`IAM_PARTITION`].
pub fn user_key(name: &str) -> String {
    format!("user/{name}")
}

/// Key of an access key's record in the [`IAM_PARTITION`].
pub fn access_key_key(access_key: &str) -> String {
    format!("key/{access_key}")
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("empty record")]
    Empty,
    #[error(
        "record format version {0} is not supported (this build reads {RECORD_FORMAT_VERSION})"
    )]
    UnsupportedVersion(u8),
    #[error("malformed record: {0}")]
    Malformed(#[from] postcard::Error),
}

/// A record as a node stores it: the opaque encoded value and the clock that orders it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    pub hlc: Hlc,
    pub value: Vec<u8>,
}

impl Versioned {
    /// The total order every replica applies: newer clock wins; on a tie (two writers in the
    /// same clock tick) the larger encoding wins, so all replicas pick the same one.
    pub fn supersedes(&self, other: &Versioned) -> bool {
        (self.hlc, &self.value) > (other.hlc, &other.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaValue {
    Bucket(BucketRecord),
    Object(ObjectRecord),
    /// A deletion. Kept so a stale replica's older record cannot come back (DESIGN 12).
    Tombstone {
        deleted_ms: u64,
    },
    /// A multipart upload in progress (in the bucket's uploads partition).
    Upload(UploadRecord),
    /// One uploaded part of a multipart upload (in the bucket's parts partition).
    Part(PartRecord),
    /// The tag set of one object version (in the bucket's tags partition).
    Tags(Vec<(String, String)>),
    /// A delete marker of a versioned bucket: the current record of a key deleted without a
    /// version id, and an entry among the key's versions.
    DeleteMarker(DeleteMarker),
    /// A bucket that DeleteBucket is emptying (in the [`BUCKETS_PARTITION`]): it still exists
    /// for readers, writers wait until it is either live again or gone (ADR 0005). Appended
    /// last, so records written before it decode unchanged.
    DeletingBucket(DeletingBucket),
    /// A user (in the [`IAM_PARTITION`]).
    User(UserRecord),
    /// An access key of a user (in the [`IAM_PARTITION`]).
    AccessKey(AccessKeyRecord),
    /// The ACL grants of one object version beyond its owner's full control (in the
    /// bucket's [`acls_partition`], keyed by [`acl_sort_key`]). Appended last, so records
    /// written before it decode unchanged.
    ObjectAcl(Vec<AclGrant>),
    /// A bucket's lifecycle configuration (in the [`LIFECYCLE_PARTITION`], key
    /// [`lifecycle_rules_key`]). Appended last, so records written before it decode unchanged.
    LifecycleRules(LifecycleRecord),
    /// How far the lifecycle worker got with a bucket (key [`lifecycle_progress_key`]).
    LifecycleProgress(LifecycleProgress),
}

/// Partition of the buckets' lifecycle configurations and the worker's progress through each
/// bucket. Kept apart from the bucket records, so builds that predate lifecycle rules never
/// meet a record they cannot read.
pub const LIFECYCLE_PARTITION: &str = "#lifecycle";

/// Key of a bucket's lifecycle configuration in the [`LIFECYCLE_PARTITION`].
pub fn lifecycle_rules_key(bucket: &str) -> String {
    format!("rules/{bucket}")
}

/// Key of the lifecycle worker's progress through a bucket in the [`LIFECYCLE_PARTITION`].
pub fn lifecycle_progress_key(bucket: &str) -> String {
    format!("progress/{bucket}")
}

/// A bucket's lifecycle configuration, for the bucket created at `bucket_created_ms`: a
/// configuration left from a deleted bucket of the same name never applies to a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRecord {
    pub bucket_created_ms: u64,
    pub configuration: crate::lifecycle::LifecycleConfiguration,
}

/// The lifecycle worker's progress through one bucket: a pass walks the bucket's objects (or
/// versions), then its multipart uploads, and resumes after `cursor` wherever it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleProgress {
    pub bucket_created_ms: u64,
    /// Passes completed.
    pub passes: u64,
    /// When the pass under way started; `None` between passes.
    pub pass_started_ms: Option<u64>,
    pub last_pass_end_ms: Option<u64>,
    /// Within the pass under way: `false` while walking objects, `true` while walking uploads.
    pub in_uploads: bool,
    /// The last sort key handled in the current walk.
    pub cursor: Vec<u8>,
    /// Totals since the bucket got its first rules.
    pub scanned: u64,
    pub expired: u64,
    pub noncurrent_expired: u64,
    pub markers_removed: u64,
    pub uploads_aborted: u64,
}

/// A user of the store: owns the buckets it creates and signs with its access keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    pub created_ms: u64,
}

/// An access key and what it may do. The secret is stored as is: SigV4 verification needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    pub user: String,
    pub secret_key: String,
    pub created_ms: u64,
    /// A disabled key authenticates nothing until enabled again.
    pub disabled: bool,
    /// Wall-clock ms after which the key authenticates nothing.
    pub expires_ms: Option<u64>,
    pub scope: KeyScope,
}

/// Limits of one access key, on top of what its user may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyScope {
    /// Only reads (GET, HEAD, listings).
    pub read_only: bool,
    /// `bucket` or `bucket/prefix` entries: the key reaches only objects under one of them (and
    /// lists only within them). Empty: no limit.
    pub prefixes: Vec<String>,
}

/// A bucket while DeleteBucket checks that it is empty and aborts its uploads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletingBucket {
    pub bucket: BucketRecord,
    /// When the deletion began (wall clock); a deletion whose gateway died is rolled back
    /// after [`crate::limits::BUCKET_DELETE_TTL`].
    pub since_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteMarker {
    /// `None` is the null version.
    pub version_id: Option<String>,
    pub deleted_ms: u64,
}

/// Partition of every version of a bucket's objects, once versioning was turned on; sort key
/// [`version_sort_key`], so the versions of a key are adjacent and newest first.
pub fn versions_partition(bucket: &str) -> String {
    format!("{bucket}{VERSIONS_SUFFIX}")
}

/// What ends the name of a bucket's versions partition.
pub const VERSIONS_SUFFIX: &str = "#versions";

/// The version id S3 clients see for the null version.
pub const NULL_VERSION_ID: &str = "null";

/// The part of a version's sort key that orders it among the versions of its key: the clock
/// inverted, so newer sorts first.
fn version_stamp(hlc: Hlc) -> String {
    format!("{:016x}", u64::MAX - hlc.0)
}

/// A fresh version id for a version written at `hlc`: its stamp plus random bits, 24 hex
/// characters. The id is also the version's sort suffix, so a lookup by id is one read.
pub fn new_version_id(hlc: Hlc, random: u32) -> String {
    let mut id = version_stamp(hlc);
    let _ = write!(id, "{random:08x}");
    id
}

/// Whether `id` can be a version id this store issued (else the request is malformed).
pub fn is_valid_version_id(id: &str) -> bool {
    id == NULL_VERSION_ID || (id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Sort key of version `version_id` (never `null`) of `key`.
pub fn version_sort_key(key: &str, version_id: &str) -> String {
    format!("{key}\0{version_id}")
}

/// Sort key of a null version of `key` written at `hlc`. Null versions keep their place in
/// time order; finding "the" null version of a key takes a scan of the key's versions.
pub fn null_version_sort_key(key: &str, hlc: Hlc) -> String {
    format!("{key}\0{}{NULL_VERSION_ID}", version_stamp(hlc))
}

/// The object key of a version sort key.
pub fn key_of_version_sort_key(sort_key: &str) -> &str {
    sort_key.split_once('\0').map_or(sort_key, |(k, _)| k)
}

/// The prefix every version sort key of `key` starts with.
pub fn versions_of_key_prefix(key: &str) -> String {
    format!("{key}\0")
}

/// Partition of a bucket's tag sets set after the write (PutObjectTagging).
pub fn tags_partition(bucket: &str) -> String {
    format!("{bucket}#tags")
}

/// Tag sets are keyed by object key and version, so a tag change can never touch (or bring
/// back) another version of the object.
pub fn tags_sort_key(key: &str, record: &ObjectRecord) -> String {
    format!("{key}\0{}", record.version_token())
}

/// Partition of a bucket's object ACLs (PutObjectAcl).
pub fn acls_partition(bucket: &str) -> String {
    format!("{bucket}#acls")
}

/// Object ACLs are keyed like tag sets: by object key and version, so an overwrite starts
/// private, as in S3, and an ACL can never reach another version.
pub fn acl_sort_key(key: &str, record: &ObjectRecord) -> String {
    acl_sort_key_of(key, &record.version_token())
}

/// [`acl_sort_key`] of the version with [`ObjectRecord::version_token`] `token`.
pub fn acl_sort_key_of(key: &str, token: &str) -> String {
    format!("{key}\0{token}")
}

/// Partition of a bucket's multipart uploads; sort key [`upload_sort_key`].
pub fn uploads_partition(bucket: &str) -> String {
    format!("{bucket}#uploads")
}

/// Partition of a bucket's uploaded parts; sort key [`part_sort_key`]. `#` never occurs in a
/// bucket name, so these never collide with a bucket's own partition.
pub fn parts_partition(bucket: &str) -> String {
    format!("{bucket}#parts")
}

/// Uploads sort by object key, then upload id (`\0` sorts before every other character).
pub fn upload_sort_key(key: &str, upload_id: &str) -> String {
    format!("{key}\0{upload_id}")
}

pub fn part_sort_key(upload_id: &str, part_number: u32) -> String {
    format!("{upload_id}\0{part_number:05}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub key: String,
    pub initiated_ms: u64,
    pub content_type: Option<String>,
    pub user_metadata: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub part_number: u32,
    pub last_modified_ms: u64,
    pub part: PartData,
}

/// One part's bytes. A completed multipart object is the concatenation of its parts, each
/// stored (inline or erasure-coded) exactly as it was uploaded: completion copies no data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartData {
    pub size_bytes: u64,
    /// Hex MD5 of the part's bytes.
    pub etag: String,
    /// Never [`ObjectData::Multipart`].
    pub data: ObjectData,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub created_ms: u64,
    pub versioning: Versioning,
    /// Who may do what with the bucket.
    pub access: BucketAccess,
}

/// A bucket's owner and its S3 access settings (policy, ACL, Object Ownership, Block Public
/// Access), evaluated on every request by the gateway's authorization (ADR 0007).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketAccess {
    /// The user who created the bucket. Empty for buckets created before buckets had owners
    /// (format 2): only administrators reach them.
    pub owner: String,
    /// The bucket policy as put (JSON, validated by PutBucketPolicy).
    pub policy: Option<String>,
    /// The bucket ACL's grants besides the owner's own full control.
    pub acl: Vec<AclGrant>,
    pub ownership: ObjectOwnership,
    /// `None`: no Block Public Access configuration (GetPublicAccessBlock answers 404).
    pub public_access_block: Option<PublicAccessBlock>,
}

impl BucketAccess {
    /// The settings of a bucket `owner` creates now: ACLs disabled and public access blocked,
    /// as AWS sets up new buckets since April 2023.
    pub fn new_bucket(owner: &str) -> BucketAccess {
        BucketAccess {
            owner: owner.to_string(),
            policy: None,
            acl: Vec::new(),
            ownership: ObjectOwnership::BucketOwnerEnforced,
            public_access_block: Some(PublicAccessBlock::all()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclGrant {
    pub grantee: Grantee,
    pub permission: Permission,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grantee {
    /// A user, by name (its S3 canonical id).
    User(String),
    /// Everyone, anonymous requests included.
    AllUsers,
    /// Every request signed by a valid key.
    AuthenticatedUsers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Permission {
    FullControl,
    Read,
    Write,
    ReadAcp,
    WriteAcp,
}

/// S3 Object Ownership. Only `BucketOwnerEnforced` (the default) disables ACLs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectOwnership {
    #[default]
    BucketOwnerEnforced,
    BucketOwnerPreferred,
    ObjectWriter,
}

/// S3 Block Public Access settings of a bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    pub fn all() -> PublicAccessBlock {
        PublicAccessBlock {
            block_public_acls: true,
            ignore_public_acls: true,
            block_public_policy: true,
            restrict_public_buckets: true,
        }
    }
}

/// A bucket's versioning state. A bucket never returns to `Unversioned` once versioning was
/// turned on (as in S3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Versioning {
    #[default]
    Unversioned,
    Enabled,
    Suspended,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub size_bytes: u64,
    /// The S3 ETag without quotes (hex MD5 of the body for single PUTs).
    pub etag: String,
    pub content_type: Option<String>,
    pub user_metadata: Vec<(String, String)>,
    pub last_modified_ms: u64,
    pub data: ObjectData,
    /// The `x-amz-checksum-*` the client sent (verified against the bytes) or asked for.
    pub checksum: Option<ObjectChecksum>,
    /// Tags given when the object was written (`x-amz-tagging`); later changes live in the
    /// bucket's tags partition, keyed by [`tags_sort_key`].
    pub tags: Vec<(String, String)>,
    /// `None`: the null version (written while versioning was off or suspended).
    pub version_id: Option<String>,
}

impl ObjectRecord {
    /// Identifies this version of the object among the versions of its key.
    pub fn version_token(&self) -> String {
        format!("{}:{}", self.last_modified_ms, self.etag)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectChecksum {
    pub algorithm: ChecksumAlgorithm,
    /// Base64 of the digest, as S3 sends it.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectData {
    /// Small objects live inside the record (DESIGN 6).
    Inline(Vec<u8>),
    Erasure(ErasureData),
    /// A completed multipart upload: its parts in order.
    Multipart(Vec<PartData>),
}

impl ObjectData {
    /// Every erasure-coded piece this data consists of (for cleanup).
    pub fn erasure_pieces(&self) -> Vec<&ErasureData> {
        match self {
            ObjectData::Inline(_) => Vec::new(),
            ObjectData::Erasure(e) => vec![e],
            ObjectData::Multipart(parts) => {
                parts.iter().flat_map(|p| p.data.erasure_pieces()).collect()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureData {
    pub version: VersionId,
    pub layout: StripeLayout,
    /// `placement[i]` holds chunk `i` of every stripe; `None` where the chunk could not be
    /// written (the stripe then has fewer chunks and awaits repair, DESIGN 8).
    pub placement: Vec<Option<NodeId>>,
}

impl MetaValue {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_FORMAT_VERSION];
        postcard::to_io(self, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<MetaValue, RecordError> {
        match bytes.split_first() {
            None => Err(RecordError::Empty),
            Some((&RECORD_FORMAT_VERSION, rest)) => Ok(postcard::from_bytes(rest)?),
            Some((&2, rest)) => Ok(postcard::from_bytes::<v2::MetaValue>(rest)?.into()),
            Some((&v, _)) => Err(RecordError::UnsupportedVersion(v)),
        }
    }

    pub fn is_tombstone(&self) -> bool {
        matches!(self, MetaValue::Tombstone { .. })
    }

    /// The version id of an object or delete marker record (`None` for the null version, and
    /// for records that are neither).
    pub fn version_id(&self) -> Option<&str> {
        match self {
            MetaValue::Object(r) => r.version_id.as_deref(),
            MetaValue::DeleteMarker(m) => m.version_id.as_deref(),
            _ => None,
        }
    }

    /// Whether this is an object version or delete marker (not a deletion or other record).
    pub fn is_version(&self) -> bool {
        matches!(self, MetaValue::Object(_) | MetaValue::DeleteMarker(_))
    }
}

/// The encoded record with the bytes of an inline object (or inline part) left out, for
/// listings (DESIGN 16); any other record, and bytes that do not decode, are returned as they
/// are. Sizes, ETags and metadata stay.
pub fn without_inline_body(encoded: &[u8]) -> Vec<u8> {
    let strip = |data: &mut ObjectData| match data {
        ObjectData::Inline(bytes) if !bytes.is_empty() => {
            bytes.clear();
            true
        }
        _ => false,
    };
    let stripped = match MetaValue::decode(encoded) {
        Ok(MetaValue::Object(mut r)) => strip(&mut r.data).then_some(MetaValue::Object(r)),
        Ok(MetaValue::Part(mut p)) => strip(&mut p.part.data).then_some(MetaValue::Part(p)),
        _ => None,
    };
    stripped.map_or_else(|| encoded.to_vec(), |v| v.encode())
}

/// Records of format version 2, before buckets had owners: decoded into today's types, their
/// buckets owned by no user (administrators only).
mod v2 {
    use super::{
        DeleteMarker, PartRecord, UploadRecord, Versioning, {BucketAccess, ObjectRecord},
    };
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) enum MetaValue {
        Bucket(BucketRecord),
        Object(ObjectRecord),
        Tombstone { deleted_ms: u64 },
        Upload(UploadRecord),
        Part(PartRecord),
        Tags(Vec<(String, String)>),
        DeleteMarker(DeleteMarker),
        DeletingBucket(DeletingBucket),
    }

    #[derive(Deserialize)]
    pub(super) struct BucketRecord {
        created_ms: u64,
        versioning: Versioning,
    }

    #[derive(Deserialize)]
    pub(super) struct DeletingBucket {
        bucket: BucketRecord,
        since_ms: u64,
    }

    impl From<BucketRecord> for super::BucketRecord {
        fn from(b: BucketRecord) -> Self {
            super::BucketRecord {
                created_ms: b.created_ms,
                versioning: b.versioning,
                access: BucketAccess::default(),
            }
        }
    }

    impl From<MetaValue> for super::MetaValue {
        fn from(v: MetaValue) -> Self {
            use super::MetaValue as Now;
            match v {
                MetaValue::Bucket(b) => Now::Bucket(b.into()),
                MetaValue::Object(r) => Now::Object(r),
                MetaValue::Tombstone { deleted_ms } => Now::Tombstone { deleted_ms },
                MetaValue::Upload(u) => Now::Upload(u),
                MetaValue::Part(p) => Now::Part(p),
                MetaValue::Tags(t) => Now::Tags(t),
                MetaValue::DeleteMarker(m) => Now::DeleteMarker(m),
                MetaValue::DeletingBucket(d) => Now::DeletingBucket(super::DeletingBucket {
                    bucket: d.bucket.into(),
                    since_ms: d.since_ms,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn format_2_buckets_decode_owned_by_no_user() {
        // Versioning::Suspended bucket created at ms 9, then a deleting one, as format 2 wrote them.
        let bucket = [2u8, 0, 9, 2];
        assert_eq!(
            MetaValue::decode(&bucket).unwrap(),
            MetaValue::Bucket(BucketRecord {
                created_ms: 9,
                versioning: Versioning::Suspended,
                access: BucketAccess::default(),
            })
        );
        let deleting = [2u8, 7, 9, 1, 5];
        let Ok(MetaValue::DeletingBucket(d)) = MetaValue::decode(&deleting) else {
            panic!("format 2 deleting bucket did not decode");
        };
        assert_eq!((d.bucket.created_ms, d.since_ms), (9, 5));
        assert_eq!(d.bucket.access.owner, "");
        let tombstone = [2u8, 2, 77];
        assert_eq!(
            MetaValue::decode(&tombstone).unwrap(),
            MetaValue::Tombstone { deleted_ms: 77 }
        );
    }

    fn object() -> impl Strategy<Value = MetaValue> {
        (
            any::<u64>(),
            "[0-9a-f]{32}",
            proptest::option::of("[a-z]+/[a-z]+"),
            proptest::collection::vec(("[a-z]{1,8}", ".{0,16}"), 0..4),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<[u8; 16]>(),
            proptest::collection::vec(proptest::option::of(any::<u32>()), 1..10),
            any::<bool>(),
        )
            .prop_map(|(size, etag, ct, meta, inline, v, placement, is_inline)| {
                let data = if is_inline {
                    ObjectData::Inline(inline)
                } else {
                    ObjectData::Erasure(ErasureData {
                        version: VersionId(v),
                        layout: StripeLayout {
                            k: 4,
                            m: 2,
                            chunk_size_bytes: 262_144,
                        },
                        placement: placement.into_iter().map(|p| p.map(NodeId)).collect(),
                    })
                };
                MetaValue::Object(ObjectRecord {
                    size_bytes: size,
                    etag,
                    content_type: ct,
                    user_metadata: meta,
                    last_modified_ms: size / 3,
                    data,
                    checksum: None,
                    tags: vec![],
                    version_id: (size % 2 == 0).then(|| new_version_id(Hlc(size), 7)),
                })
            })
    }

    proptest! {
        #[test]
        fn newer_versions_sort_first_among_the_versions_of_a_key(
            a in any::<u64>(), b in any::<u64>(), ra in any::<u32>(), rb in any::<u32>(),
            key in "[a-z/]{0,12}",
        ) {
            prop_assume!(a < b);
            let (older, newer) = (new_version_id(Hlc(a), ra), new_version_id(Hlc(b), rb));
            prop_assert!(is_valid_version_id(&older));
            prop_assert!(version_sort_key(&key, &newer) < version_sort_key(&key, &older));
            prop_assert!(null_version_sort_key(&key, Hlc(b)) < version_sort_key(&key, &older));
            let sk = version_sort_key(&key, &newer);
            prop_assert_eq!(key_of_version_sort_key(&sk), key.as_str());
            prop_assert!(sk.starts_with(&versions_of_key_prefix(&key)));
        }
    }

    #[test]
    fn version_ids_are_checked() {
        assert!(is_valid_version_id("null"));
        assert!(is_valid_version_id(&new_version_id(Hlc(5), 9)));
        assert!(!is_valid_version_id("zzzzzzzzzzzzzzzzzzzzzzzz"));
        assert!(!is_valid_version_id("123"));
        assert!(!is_valid_version_id(""));
    }

    proptest! {
        #[test]
        fn records_round_trip(value in prop_oneof![
            object(),
            any::<u64>().prop_map(|t| MetaValue::Tombstone { deleted_ms: t }),
            (any::<u64>(), "[a-z]{0,8}", proptest::option::of("[ -~]{0,40}")).prop_map(|(t, owner, policy)| {
                let mut access = BucketAccess::new_bucket(&owner);
                access.policy = policy;
                access.acl.push(AclGrant { grantee: Grantee::User(owner), permission: Permission::Read });
                MetaValue::Bucket(BucketRecord { created_ms: t, versioning: Versioning::Enabled, access })
            }),
            ("[a-z]{1,8}", "[A-Za-z0-9]{20}", any::<bool>(), proptest::option::of(any::<u64>())).prop_map(|(user, secret, disabled, expires_ms)| {
                MetaValue::AccessKey(AccessKeyRecord {
                    user, secret_key: secret, created_ms: 1, disabled, expires_ms,
                    scope: KeyScope { read_only: disabled, prefixes: vec!["b/p".into()] },
                })
            }),
            (any::<u64>(), proptest::option::of("[0-9a-f]{24}")).prop_map(|(t, v)| {
                MetaValue::DeleteMarker(DeleteMarker {
                    version_id: v,
                    deleted_ms: t,
                })
            }),
            (any::<u64>(), any::<u64>()).prop_map(|(c, t)| {
                MetaValue::DeletingBucket(DeletingBucket {
                    bucket: BucketRecord { created_ms: c, versioning: Versioning::Suspended, access: BucketAccess::default() },
                    since_ms: t,
                })
            }),
        ]) {
            let bytes = value.encode();
            prop_assert_eq!(bytes[0], RECORD_FORMAT_VERSION);
            prop_assert_eq!(MetaValue::decode(&bytes).unwrap(), value);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = MetaValue::decode(&bytes);
            let _ = without_inline_body(&bytes);
        }

        #[test]
        fn listings_keep_everything_but_inline_bytes(value in object()) {
            let stripped = MetaValue::decode(&without_inline_body(&value.encode())).unwrap();
            let (MetaValue::Object(before), MetaValue::Object(after)) = (&value, &stripped) else {
                unreachable!("object() makes objects");
            };
            prop_assert_eq!(before.size_bytes, after.size_bytes);
            prop_assert_eq!(&before.etag, &after.etag);
            prop_assert_eq!(&before.version_id, &after.version_id);
            match (&before.data, &after.data) {
                (ObjectData::Inline(_), ObjectData::Inline(b)) => prop_assert!(b.is_empty()),
                (b, a) => prop_assert_eq!(b, a),
            }
        }
    }

    #[test]
    fn unknown_format_versions_are_refused() {
        let mut bytes = MetaValue::Tombstone { deleted_ms: 1 }.encode();
        bytes[0] = 9;
        assert!(matches!(
            MetaValue::decode(&bytes),
            Err(RecordError::UnsupportedVersion(9))
        ));
    }

    #[test]
    fn newer_clock_supersedes_and_ties_break_the_same_way_everywhere() {
        let a = Versioned {
            hlc: Hlc(5),
            value: vec![1],
        };
        let b = Versioned {
            hlc: Hlc(6),
            value: vec![0],
        };
        let c = Versioned {
            hlc: Hlc(6),
            value: vec![2],
        };
        assert!(b.supersedes(&a) && !a.supersedes(&b));
        assert!(c.supersedes(&b) && !b.supersedes(&c));
        assert!(!c.supersedes(&c));
    }
}
