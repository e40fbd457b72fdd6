//! Authorization of every S3 request, before any of its data is read or written: s3s calls
//! [`Authorizer::check`] once the signature is verified (or found absent) and before it reads
//! the body (ADR 0007).
//!
//! The decision, in order: the signer's key scope (read-only, buckets and prefixes) limits
//! everything; administrators may do anything; a bucket policy's explicit Deny wins over every
//! grant; the bucket's owner may do anything else; otherwise a policy Allow or, where Object
//! Ownership lets ACLs apply, an ACL grant; otherwise `403 AccessDenied`. A request naming a
//! bucket that does not exist passes, so that its operation answers `NoSuchBucket`.
//! CopyObject and UploadPartCopy are checked twice: the destination and the source read.
//! DeleteObjects is checked per key once its body is parsed.

use crate::buckets;
use crate::error::GatewayError;
use crate::iam::Identity;
use crate::policy::acl::{Acl, Grantee};
use crate::policy::{self, Context, Decision, Policy, Principal};
use crate::state::GatewayState;
use dmpstore_common::record::{BucketAccess, KeyScope, ObjectOwnership};
use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::DeleteObjectsInput;
use s3s::path::S3Path;
use s3s::{S3Request, S3Result};
use std::net::SocketAddr;
use std::sync::Arc;

/// Where a request came from, put in its extensions by the server (for `aws:SourceIp` and
/// `aws:SecureTransport`).
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// One thing a request does, as authorization sees it.
#[derive(Debug, Clone)]
pub struct Access {
    /// The s3s operation name ("GetObject", "ListObjectsV2", ...).
    pub op: String,
    pub bucket: String,
    /// The object key, for operations on an object.
    pub key: Option<String>,
    pub version_id: Option<String>,
    /// The `prefix` of a listing.
    pub prefix: Option<String>,
    /// Condition keys of the request (`aws:SourceIp`, `s3:prefix`, ...) for bucket policies.
    pub context: Context,
}

impl Access {
    /// Whether the operation only reads.
    pub fn is_read(&self) -> bool {
        ["Get", "Head", "List"]
            .iter()
            .any(|p| self.op.starts_with(p))
    }

    fn is_listing(&self) -> bool {
        self.op.starts_with("List")
    }
}

#[derive(Debug)]
pub struct Authorizer {
    state: Arc<GatewayState>,
}

impl Authorizer {
    pub fn new(state: Arc<GatewayState>) -> Authorizer {
        Authorizer { state }
    }

    async fn identity(&self, access_key: Option<&str>) -> Result<Option<Identity>, GatewayError> {
        let Some(access_key) = access_key else {
            return Ok(None);
        };
        let entry = self
            .state
            .identities
            .resolve(&self.state, access_key)
            .await?;
        Ok(entry.map(|e| e.identity))
    }
}

#[async_trait::async_trait]
impl S3Access for Authorizer {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let access_key = cx.credentials().map(|c| c.access_key.clone());
        let identity = self.identity(access_key.as_deref()).await?;
        if let Some(id) = &identity {
            cx.extensions_mut().insert(id.clone());
        }
        let op = cx.s3_op().name().to_string();
        let query = cx.uri().query().unwrap_or("").to_string();
        let query = query.as_str();
        let (bucket, key) = match cx.s3_path() {
            S3Path::Root => return Ok(root(&op, identity.as_ref())?),
            S3Path::Bucket { bucket } => (bucket.to_string(), None),
            S3Path::Object { bucket, key } => (bucket.to_string(), Some(key.to_string())),
        };
        let context = request_context(cx, identity.as_ref(), query);
        let access = Access {
            op,
            bucket,
            key,
            version_id: query_param(query, "versionId"),
            prefix: query_param(query, "prefix"),
            context: context.clone(),
        };
        authorize(&self.state, identity.as_ref(), &access).await?;
        if let Some(mut source) = copy_source(cx.headers()) {
            source.context = context;
            authorize(&self.state, identity.as_ref(), &source).await?;
        }
        cx.extensions_mut().insert(access.context);
        Ok(())
    }

    async fn delete_objects(&self, req: &mut S3Request<DeleteObjectsInput>) -> S3Result<()> {
        let identity = req.extensions.get::<Identity>().cloned();
        let context = req.extensions.get::<Context>().cloned().unwrap_or_default();
        for object in &req.input.delete.objects {
            let access = Access {
                op: "DeleteObject".into(),
                bucket: req.input.bucket.clone(),
                key: Some(object.key.clone()),
                version_id: object.version_id.clone(),
                prefix: None,
                context: context.clone(),
            };
            authorize(&self.state, identity.as_ref(), &access).await?;
        }
        Ok(())
    }
}

/// ListBuckets (the only operation on the root): any signed request; what it lists is
/// filtered by owner.
fn root(op: &str, identity: Option<&Identity>) -> Result<(), GatewayError> {
    match identity {
        Some(_) if op == "ListBuckets" => Ok(()),
        Some(_) => Err(GatewayError::AccessDenied),
        None => Err(GatewayError::AccessDenied),
    }
}

/// Whether `identity` may do `access`.
pub async fn authorize(
    state: &Arc<GatewayState>,
    identity: Option<&Identity>,
    access: &Access,
) -> Result<(), GatewayError> {
    if let Some(Identity::User { scope, .. }) = identity {
        if !within_scope(scope, access) {
            return Err(GatewayError::AccessDenied);
        }
    }
    if identity.is_some_and(Identity::is_admin) {
        return Ok(());
    }
    if access.op == "CreateBucket" {
        // Any user may create a bucket; taking a name another owns is refused there.
        return identity.map(|_| ()).ok_or(GatewayError::AccessDenied);
    }
    let Some(bucket) = buckets::find(state, &access.bucket).await? else {
        return Ok(());
    };
    let policy = match &bucket.access.policy {
        Some(text) => Some(
            Policy::parse(text, &access.bucket)
                .map_err(|e| GatewayError::Internal(format!("stored bucket policy: {e}")))?,
        ),
        None => None,
    };
    let mut access = access.clone();
    let tests_tags = bucket
        .access
        .policy
        .as_deref()
        .is_some_and(|text| text.to_ascii_lowercase().contains("s3:existingobjecttag/"));
    if tests_tags {
        add_existing_tags(state, &mut access).await?;
    }
    match decide(&bucket.access, policy.as_ref(), identity, &access) {
        Verdict::Allow => Ok(()),
        Verdict::Deny => Err(GatewayError::AccessDenied),
        Verdict::NotGranted => {
            match object_acl_allows(state, &bucket.access, identity, &access).await? {
                true => Ok(()),
                false => Err(GatewayError::AccessDenied),
            }
        }
    }
}

/// What a bucket's owner, policy and ACL say of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// An explicit Deny of the bucket policy: nothing else can allow it.
    Deny,
    /// Neither: an object's ACL may still grant it.
    NotGranted,
}

/// Whether the ACL of the object version a request names grants it, where Object Ownership
/// lets ACLs apply (a public grant not if the bucket ignores public ACLs). Read only for the
/// requests nothing else allowed, so owners and policy grants never pay for it.
async fn object_acl_allows(
    state: &Arc<GatewayState>,
    bucket: &BucketAccess,
    identity: Option<&Identity>,
    access: &Access,
) -> Result<bool, GatewayError> {
    let (Some(key), Some(action)) = (
        access.key.as_deref(),
        policy::action_for(&access.op, access.version_id.is_some()),
    ) else {
        return Ok(false);
    };
    if bucket.ownership == ObjectOwnership::BucketOwnerEnforced
        || bucket.owner.is_empty()
        || !action.on_object
    {
        return Ok(false);
    }
    let version = access.version_id.as_deref();
    let grants = match crate::s3::access::object_grants(state, &access.bucket, key, version).await {
        Ok(grants) => grants,
        Err(GatewayError::NoSuchKey | GatewayError::NoSuchVersion) => return Ok(false),
        Err(e) => return Err(e),
    };
    let ignore_public = bucket
        .public_access_block
        .is_some_and(|b| b.ignore_public_acls);
    let acl = Acl {
        owner: bucket.owner.clone(),
        grants: grants
            .into_iter()
            .filter(|g| !ignore_public || matches!(g.grantee, Grantee::User(_)))
            .collect(),
    };
    let principal = match identity {
        Some(id) => Principal::User(id.name()),
        None => Principal::Anonymous,
    };
    Ok(acl.allows(&principal, action.name, true))
}

/// The decision on an existing bucket: an explicit Deny in its policy wins; then the owner;
/// then a policy Allow (not a public one if the bucket restricts public buckets); then, where
/// Object Ownership lets ACLs apply, a bucket ACL grant (not a public one if the bucket
/// ignores public ACLs). [`Verdict::NotGranted`] leaves the object's ACL to decide.
pub fn decide(
    bucket: &BucketAccess,
    policy: Option<&Policy>,
    identity: Option<&Identity>,
    access: &Access,
) -> Verdict {
    let principal = match identity {
        Some(id) => Principal::User(id.name()),
        None => Principal::Anonymous,
    };
    let is_owner = identity.is_some_and(|id| !bucket.owner.is_empty() && id.name() == bucket.owner);
    let Some(action) = policy::action_for(&access.op, access.version_id.is_some()) else {
        return if is_owner {
            Verdict::Allow
        } else {
            Verdict::NotGranted
        };
    };
    let key = action.on_object.then_some(access.key.as_deref()).flatten();
    let resource = policy::resource_arn(&access.bucket, key);
    let decision = policy.map_or(Decision::NoOpinion, |p| {
        p.evaluate(&principal, action.name, &resource, &access.context)
    });
    let blocks = bucket.public_access_block.unwrap_or_default();
    let allowed = match decision {
        Decision::Deny => return Verdict::Deny,
        _ if is_owner => true,
        Decision::Allow
            if !(blocks.restrict_public_buckets && policy.is_some_and(Policy::is_public)) =>
        {
            true
        }
        _ => acl_allows(bucket, blocks.ignore_public_acls, &principal, action.name),
    };
    if allowed {
        Verdict::Allow
    } else {
        Verdict::NotGranted
    }
}

fn acl_allows(
    bucket: &BucketAccess,
    ignore_public: bool,
    principal: &Principal,
    action: &str,
) -> bool {
    if bucket.ownership == ObjectOwnership::BucketOwnerEnforced || bucket.owner.is_empty() {
        return false;
    }
    let grants = bucket
        .acl
        .iter()
        .filter(|g| !ignore_public || matches!(g.grantee, Grantee::User(_)))
        .cloned()
        .collect();
    let acl = Acl {
        owner: bucket.owner.clone(),
        grants,
    };
    acl.allows(principal, action, false)
}

/// `s3:ExistingObjectTag/<key>` for a request on an existing object.
async fn add_existing_tags(
    state: &Arc<GatewayState>,
    access: &mut Access,
) -> Result<(), GatewayError> {
    let Some(key) = &access.key else {
        return Ok(());
    };
    let version = access.version_id.as_deref();
    match crate::tagging::get_tags(state, &access.bucket, key, version).await {
        Ok(tags) => {
            for (k, v) in tags {
                access
                    .context
                    .insert(&format!("s3:ExistingObjectTag/{k}"), v);
            }
            Ok(())
        }
        Err(GatewayError::NoSuchKey | GatewayError::NoSuchVersion) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The condition keys a bucket policy may test, from the request.
fn request_context(
    cx: &mut S3AccessContext<'_>,
    identity: Option<&Identity>,
    query: &str,
) -> Context {
    let mut c = Context::new();
    if let Some(peer) = cx.extensions_mut().get::<Peer>().copied() {
        c.insert("aws:SourceIp", peer.addr.ip().to_string());
        c.insert("aws:SecureTransport", peer.tls.to_string());
    }
    let now = time::OffsetDateTime::now_utc();
    c.insert("aws:EpochTime", now.unix_timestamp().to_string());
    if let Ok(t) = now.format(&time::format_description::well_known::Rfc3339) {
        c.insert("aws:CurrentTime", t);
    }
    if let Some(id) = identity {
        c.insert("aws:username", id.name());
    }
    for (header, key) in [
        ("user-agent", "aws:UserAgent"),
        ("referer", "aws:Referer"),
        ("x-amz-acl", "s3:x-amz-acl"),
        ("x-amz-content-sha256", "s3:x-amz-content-sha256"),
        ("x-amz-copy-source", "s3:x-amz-copy-source"),
        (
            "x-amz-server-side-encryption",
            "s3:x-amz-server-side-encryption",
        ),
        ("x-amz-metadata-directive", "s3:x-amz-metadata-directive"),
    ] {
        if let Some(v) = cx.headers().get(header).and_then(|v| v.to_str().ok()) {
            c.insert(key, v);
        }
    }
    for (param, key) in [
        ("prefix", "s3:prefix"),
        ("delimiter", "s3:delimiter"),
        ("max-keys", "s3:max-keys"),
        ("versionId", "s3:VersionId"),
    ] {
        if let Some(v) = query_param(query, param) {
            c.insert(key, v);
        }
    }
    let presigned = query_param(query, "X-Amz-Signature").is_some();
    c.insert(
        "s3:authType",
        if presigned {
            "REST-QUERY-STRING"
        } else {
            "REST-HEADER"
        },
    );
    if cx.credentials().is_some() {
        c.insert("s3:signatureversion", "AWS4-HMAC-SHA256");
    }
    c
}

/// Whether a key's scope lets it do `access`.
pub fn within_scope(scope: &KeyScope, access: &Access) -> bool {
    if scope.read_only && !access.is_read() {
        return false;
    }
    if scope.prefixes.is_empty() {
        return true;
    }
    scope.prefixes.iter().any(|entry| {
        let (bucket, prefix) = entry.split_once('/').unwrap_or((entry.as_str(), ""));
        if bucket != access.bucket {
            return false;
        }
        match (&access.key, access.is_listing()) {
            (Some(key), _) => key.starts_with(prefix),
            (None, true) => access.prefix.as_deref().unwrap_or("").starts_with(prefix),
            // Other bucket operations need the whole bucket (or are harmless reads).
            (None, false) => {
                prefix.is_empty()
                    || matches!(access.op.as_str(), "HeadBucket" | "GetBucketLocation")
            }
        }
    })
}

/// The source of a CopyObject or UploadPartCopy (`x-amz-copy-source`), as a read.
fn copy_source(headers: &http::HeaderMap) -> Option<Access> {
    let raw = headers.get("x-amz-copy-source")?.to_str().ok()?;
    let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
    let path = percent_encoding::percent_decode_str(path.trim_start_matches('/'))
        .decode_utf8()
        .ok()?;
    let (bucket, key) = path.split_once('/')?;
    Some(Access {
        op: "GetObject".into(),
        bucket: bucket.to_string(),
        key: Some(key.to_string()),
        version_id: query_param(query, "versionId"),
        prefix: None,
        context: Context::new(),
    })
}

fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(op: &str, bucket: &str, key: Option<&str>, prefix: Option<&str>) -> Access {
        Access {
            op: op.into(),
            bucket: bucket.into(),
            key: key.map(Into::into),
            version_id: None,
            prefix: prefix.map(Into::into),
            context: Context::new(),
        }
    }

    #[test]
    fn scopes_limit_keys_to_their_buckets_and_prefixes() {
        let scope = KeyScope {
            read_only: false,
            prefixes: vec!["events/2026/".into(), "segments".into()],
        };
        let check = |a: Access| within_scope(&scope, &a);
        assert!(check(access(
            "PutObject",
            "events",
            Some("2026/12/x"),
            None
        )));
        assert!(!check(access("PutObject", "events", Some("2025/x"), None)));
        assert!(check(access(
            "ListObjectsV2",
            "events",
            None,
            Some("2026/01")
        )));
        assert!(!check(access("ListObjectsV2", "events", None, None)));
        assert!(check(access("HeadBucket", "events", None, None)));
        assert!(!check(access("PutBucketPolicy", "events", None, None)));
        assert!(check(access("PutBucketPolicy", "segments", None, None)));
        assert!(check(access("DeleteObject", "segments", Some("any"), None)));
        assert!(!check(access("GetObject", "profiles", Some("any"), None)));
        let read_only = KeyScope {
            read_only: true,
            prefixes: vec![],
        };
        assert!(within_scope(
            &read_only,
            &access("GetObject", "b", Some("k"), None)
        ));
        assert!(within_scope(
            &read_only,
            &access("ListObjectVersions", "b", None, None)
        ));
        assert!(!within_scope(
            &read_only,
            &access("PutObject", "b", Some("k"), None)
        ));
        assert!(!within_scope(
            &read_only,
            &access("CreateMultipartUpload", "b", Some("k"), None)
        ));
    }

    #[test]
    fn copy_sources_are_decoded() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-amz-copy-source",
            "/src/a%20b/c?versionId=v1".parse().unwrap(),
        );
        let a = copy_source(&h).unwrap();
        assert_eq!(
            (a.bucket.as_str(), a.key.as_deref()),
            ("src", Some("a b/c"))
        );
        assert_eq!(a.version_id.as_deref(), Some("v1"));
        h.insert("x-amz-copy-source", "src2/k".parse().unwrap());
        assert_eq!(copy_source(&h).unwrap().bucket, "src2");
    }
}
