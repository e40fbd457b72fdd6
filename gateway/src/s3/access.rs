//! A bucket's access settings, with AWS's semantics: bucket policies (Put/Get/Delete,
//! GetBucketPolicyStatus), ACLs of buckets and object versions, Object Ownership and Block
//! Public Access. Who may call these is decided by
//! authorization like any operation (ADR 0007); this file validates and stores.

use crate::buckets;
use crate::error::GatewayError;
use crate::policy::acl::{Acl, Grant, Grantee, Permission};
use crate::policy::Policy;
use crate::state::GatewayState;
use dmpstore_common::limits::MAX_ACL_GRANTS;
use dmpstore_common::record::{
    acl_sort_key, acl_sort_key_of, acls_partition, BucketAccess, MetaValue, ObjectOwnership,
    PublicAccessBlock,
};
use s3s::dto;
use s3s::{S3Request, S3Response, S3Result};
use std::sync::Arc;

const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";

async fn settings(state: &Arc<GatewayState>, bucket: &str) -> Result<BucketAccess, GatewayError> {
    Ok(buckets::ensure_exists(state, bucket).await?.access)
}

pub(super) async fn put_bucket_policy(
    state: &Arc<GatewayState>,
    req: S3Request<dto::PutBucketPolicyInput>,
) -> S3Result<S3Response<dto::PutBucketPolicyOutput>> {
    let input = req.input;
    let policy = Policy::parse(&input.policy, &input.bucket)
        .map_err(|e| GatewayError::MalformedPolicy(e.message().to_string()))?;
    buckets::change_access(state, &input.bucket, |a| {
        if policy.is_public() && a.public_access_block.is_some_and(|b| b.block_public_policy) {
            return Err(GatewayError::AccessDenied);
        }
        a.policy = Some(input.policy.clone());
        Ok(())
    })
    .await?;
    Ok(S3Response::new(dto::PutBucketPolicyOutput {}))
}

pub(super) async fn get_bucket_policy(
    state: &Arc<GatewayState>,
    req: S3Request<dto::GetBucketPolicyInput>,
) -> S3Result<S3Response<dto::GetBucketPolicyOutput>> {
    let policy = settings(state, &req.input.bucket).await?.policy;
    let policy = policy.ok_or(GatewayError::NoSuchBucketPolicy)?;
    Ok(S3Response::new(dto::GetBucketPolicyOutput {
        policy: Some(policy),
    }))
}

pub(super) async fn delete_bucket_policy(
    state: &Arc<GatewayState>,
    req: S3Request<dto::DeleteBucketPolicyInput>,
) -> S3Result<S3Response<dto::DeleteBucketPolicyOutput>> {
    buckets::change_access(state, &req.input.bucket, |a| {
        a.policy = None;
        Ok(())
    })
    .await?;
    Ok(S3Response::new(dto::DeleteBucketPolicyOutput {}))
}

pub(super) async fn get_bucket_policy_status(
    state: &Arc<GatewayState>,
    req: S3Request<dto::GetBucketPolicyStatusInput>,
) -> S3Result<S3Response<dto::GetBucketPolicyStatusOutput>> {
    let bucket = &req.input.bucket;
    let text = settings(state, bucket).await?.policy;
    let text = text.ok_or(GatewayError::NoSuchBucketPolicy)?;
    let is_public = Policy::parse(&text, bucket).is_ok_and(|p| p.is_public());
    Ok(S3Response::new(dto::GetBucketPolicyStatusOutput {
        policy_status: Some(dto::PolicyStatus {
            is_public: Some(is_public),
        }),
    }))
}

pub(super) async fn put_bucket_acl(
    state: &Arc<GatewayState>,
    req: S3Request<dto::PutBucketAclInput>,
) -> S3Result<S3Response<dto::PutBucketAclOutput>> {
    let i = req.input;
    let headers = [
        (i.grant_full_control.as_deref(), Permission::FullControl),
        (i.grant_read.as_deref(), Permission::Read),
        (i.grant_read_acp.as_deref(), Permission::ReadAcp),
        (i.grant_write.as_deref(), Permission::Write),
        (i.grant_write_acp.as_deref(), Permission::WriteAcp),
    ];
    buckets::change_access(state, &i.bucket, |a| {
        let canned = i.acl.as_ref().map(|c| c.as_str());
        let grants =
            requested_grants(&a.owner, canned, i.access_control_policy.as_ref(), &headers)?;
        set_bucket_acl(a, grants)
    })
    .await?;
    Ok(S3Response::new(dto::PutBucketAclOutput {}))
}

/// Stores `grants` (the owner's own full control is implied) if Object Ownership lets ACLs
/// apply and Block Public Access lets a public one be set.
fn set_bucket_acl(a: &mut BucketAccess, grants: Vec<Grant>) -> Result<(), GatewayError> {
    a.acl = checked_grants(a, grants)?;
    Ok(())
}

/// The grants of an ACL for a resource of the bucket with settings `a`, without the owner's
/// own full control (implied): refused if Object Ownership disables ACLs, if Block Public
/// Access blocks a public one, or if there are too many.
fn checked_grants(a: &BucketAccess, grants: Vec<Grant>) -> Result<Vec<Grant>, GatewayError> {
    let owner = a.owner.clone();
    let extra: Vec<Grant> = grants
        .into_iter()
        .filter(|g| {
            !(g.grantee == Grantee::User(owner.clone()) && g.permission == Permission::FullControl)
        })
        .collect();
    if a.ownership == ObjectOwnership::BucketOwnerEnforced && !extra.is_empty() {
        return Err(GatewayError::AccessControlListNotSupported);
    }
    let acl = Acl {
        owner,
        grants: extra.clone(),
    };
    if acl.is_public() && a.public_access_block.is_some_and(|b| b.block_public_acls) {
        return Err(GatewayError::AccessDenied);
    }
    if extra.len() > MAX_ACL_GRANTS {
        return Err(GatewayError::MalformedAcl(format!(
            "at most {MAX_ACL_GRANTS} grants"
        )));
    }
    Ok(extra)
}

pub(super) async fn get_bucket_acl(
    state: &Arc<GatewayState>,
    req: S3Request<dto::GetBucketAclInput>,
) -> S3Result<S3Response<dto::GetBucketAclOutput>> {
    let a = settings(state, &req.input.bucket).await?;
    let (owner, grants) = to_dto(&a.owner, &a.acl);
    Ok(S3Response::new(dto::GetBucketAclOutput {
        grants: Some(grants),
        owner: Some(owner),
    }))
}

/// Object ACLs. Objects belong to the bucket owner (under every Object Ownership setting:
/// dmpstore records no separate object writer); an object version's ACL is the owner's full
/// control plus the grants PutObjectAcl stored for it, which apply only where Object
/// Ownership lets ACLs apply. A new version starts private, as in S3.
pub(super) async fn get_object_acl(
    state: &Arc<GatewayState>,
    req: S3Request<dto::GetObjectAclInput>,
) -> S3Result<S3Response<dto::GetObjectAclOutput>> {
    let i = req.input;
    let a = settings(state, &i.bucket).await?;
    let grants = object_grants(state, &i.bucket, &i.key, i.version_id.as_deref()).await?;
    let grants = if a.ownership == ObjectOwnership::BucketOwnerEnforced {
        Vec::new()
    } else {
        grants
    };
    let (owner, grants) = to_dto(&a.owner, &grants);
    Ok(S3Response::new(dto::GetObjectAclOutput {
        grants: Some(grants),
        owner: Some(owner),
        request_charged: None,
    }))
}

/// The grants a PutObject asks for with `x-amz-acl` or `x-amz-grant-*` (`None`: neither),
/// checked as PutObjectAcl checks them, so a refused ACL is refused before any data is
/// written: under BucketOwnerEnforced anything but the owner's full control is
/// `AccessControlListNotSupported`, as in S3.
pub async fn requested_object_grants(
    state: &Arc<GatewayState>,
    bucket: &str,
    canned: Option<&str>,
    headers: &[(Option<&str>, Permission)],
) -> Result<Option<Vec<Grant>>, GatewayError> {
    if canned.is_none() && headers.iter().all(|(h, _)| h.is_none()) {
        return Ok(None);
    }
    let a = settings(state, bucket).await?;
    let grants = requested_grants(&a.owner, canned, None, headers)?;
    Ok(Some(checked_grants(&a, grants)?))
}

/// Stores the grants of the object version `key` with version token `token`.
pub async fn set_object_grants(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    token: &str,
    grants: Vec<Grant>,
) -> Result<(), GatewayError> {
    crate::meta::put(
        state,
        &acls_partition(bucket),
        &acl_sort_key_of(key, token),
        &MetaValue::ObjectAcl(grants),
    )
    .await?;
    Ok(())
}

/// The stored grants of an object version (the current one without `version_id`).
pub async fn object_grants(
    state: &Arc<GatewayState>,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<Vec<Grant>, GatewayError> {
    let (record, _) = crate::get::head_version(state, bucket, key, version_id).await?;
    match crate::meta::get(state, &acls_partition(bucket), &acl_sort_key(key, &record)).await? {
        Some(MetaValue::ObjectAcl(grants)) => Ok(grants),
        _ => Ok(Vec::new()),
    }
}

pub(super) async fn put_object_acl(
    state: &Arc<GatewayState>,
    req: S3Request<dto::PutObjectAclInput>,
) -> S3Result<S3Response<dto::PutObjectAclOutput>> {
    let i = req.input;
    let a = settings(state, &i.bucket).await?;
    let (record, _) =
        crate::get::head_version(state, &i.bucket, &i.key, i.version_id.as_deref()).await?;
    let headers = [
        (i.grant_full_control.as_deref(), Permission::FullControl),
        (i.grant_read.as_deref(), Permission::Read),
        (i.grant_read_acp.as_deref(), Permission::ReadAcp),
        (i.grant_write.as_deref(), Permission::Write),
        (i.grant_write_acp.as_deref(), Permission::WriteAcp),
    ];
    let canned = i.acl.as_ref().map(|c| c.as_str());
    let grants = requested_grants(&a.owner, canned, i.access_control_policy.as_ref(), &headers)?;
    let extra = checked_grants(&a, grants)?;
    let token = record.version_token();
    set_object_grants(state, &i.bucket, &i.key, &token, extra).await?;
    Ok(S3Response::new(dto::PutObjectAclOutput::default()))
}

pub(super) async fn put_bucket_ownership_controls(
    state: &Arc<GatewayState>,
    req: S3Request<dto::PutBucketOwnershipControlsInput>,
) -> S3Result<S3Response<dto::PutBucketOwnershipControlsOutput>> {
    let i = req.input;
    let [rule] = i.ownership_controls.rules.as_slice() else {
        return Err(GatewayError::MalformedXml("exactly one ownership rule".into()).into());
    };
    let ownership = match rule.object_ownership.as_str() {
        "BucketOwnerEnforced" => ObjectOwnership::BucketOwnerEnforced,
        "BucketOwnerPreferred" => ObjectOwnership::BucketOwnerPreferred,
        "ObjectWriter" => ObjectOwnership::ObjectWriter,
        other => {
            return Err(
                GatewayError::MalformedXml(format!("unknown ObjectOwnership {other:?}")).into(),
            )
        }
    };
    buckets::change_access(state, &i.bucket, |a| {
        if ownership == ObjectOwnership::BucketOwnerEnforced && !a.acl.is_empty() {
            return Err(GatewayError::InvalidBucketAclWithObjectOwnership);
        }
        a.ownership = ownership;
        Ok(())
    })
    .await?;
    Ok(S3Response::new(dto::PutBucketOwnershipControlsOutput {}))
}

pub(super) async fn get_bucket_ownership_controls(
    state: &Arc<GatewayState>,
    req: S3Request<dto::GetBucketOwnershipControlsInput>,
) -> S3Result<S3Response<dto::GetBucketOwnershipControlsOutput>> {
    let ownership = match settings(state, &req.input.bucket).await?.ownership {
        ObjectOwnership::BucketOwnerEnforced => "BucketOwnerEnforced",
        ObjectOwnership::BucketOwnerPreferred => "BucketOwnerPreferred",
        ObjectOwnership::ObjectWriter => "ObjectWriter",
    };
    Ok(S3Response::new(dto::GetBucketOwnershipControlsOutput {
        ownership_controls: Some(dto::OwnershipControls {
            rules: vec![dto::OwnershipControlsRule {
                object_ownership: dto::ObjectOwnership::from_static(ownership),
            }],
        }),
    }))
}

/// S3 then applies ObjectWriter, the behaviour of buckets without ownership controls.
pub(super) async fn delete_bucket_ownership_controls(
    state: &Arc<GatewayState>,
    req: S3Request<dto::DeleteBucketOwnershipControlsInput>,
) -> S3Result<S3Response<dto::DeleteBucketOwnershipControlsOutput>> {
    buckets::change_access(state, &req.input.bucket, |a| {
        a.ownership = ObjectOwnership::ObjectWriter;
        Ok(())
    })
    .await?;
    Ok(S3Response::new(dto::DeleteBucketOwnershipControlsOutput {}))
}

pub(super) async fn put_public_access_block(
    state: &Arc<GatewayState>,
    req: S3Request<dto::PutPublicAccessBlockInput>,
) -> S3Result<S3Response<dto::PutPublicAccessBlockOutput>> {
    let i = req.input;
    let c = i.public_access_block_configuration;
    let block = PublicAccessBlock {
        block_public_acls: c.block_public_acls.unwrap_or(false),
        ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
        block_public_policy: c.block_public_policy.unwrap_or(false),
        restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
    };
    buckets::change_access(state, &i.bucket, |a| {
        a.public_access_block = Some(block);
        Ok(())
    })
    .await?;
    Ok(S3Response::new(dto::PutPublicAccessBlockOutput {}))
}

pub(super) async fn get_public_access_block(
    state: &Arc<GatewayState>,
    req: S3Request<dto::GetPublicAccessBlockInput>,
) -> S3Result<S3Response<dto::GetPublicAccessBlockOutput>> {
    let block = settings(state, &req.input.bucket)
        .await?
        .public_access_block;
    let b = block.ok_or(GatewayError::NoSuchPublicAccessBlockConfiguration)?;
    Ok(S3Response::new(dto::GetPublicAccessBlockOutput {
        public_access_block_configuration: Some(dto::PublicAccessBlockConfiguration {
            block_public_acls: Some(b.block_public_acls),
            ignore_public_acls: Some(b.ignore_public_acls),
            block_public_policy: Some(b.block_public_policy),
            restrict_public_buckets: Some(b.restrict_public_buckets),
        }),
    }))
}

pub(super) async fn delete_public_access_block(
    state: &Arc<GatewayState>,
    req: S3Request<dto::DeletePublicAccessBlockInput>,
) -> S3Result<S3Response<dto::DeletePublicAccessBlockOutput>> {
    buckets::change_access(state, &req.input.bucket, |a| {
        a.public_access_block = None;
        Ok(())
    })
    .await?;
    Ok(S3Response::new(dto::DeletePublicAccessBlockOutput {}))
}

/// The grants an ACL request names for a resource of `owner`'s bucket: a canned ACL
/// (`x-amz-acl`), else an AccessControlPolicy body, else `x-amz-grant-*` headers.
fn requested_grants(
    owner: &str,
    canned: Option<&str>,
    policy: Option<&dto::AccessControlPolicy>,
    headers: &[(Option<&str>, Permission)],
) -> Result<Vec<Grant>, GatewayError> {
    match (canned, policy) {
        (Some(name), _) => Ok(Acl::canned(name, owner, owner)
            .map_err(|e| GatewayError::InvalidArgument(e.message().to_string()))?
            .grants),
        (None, Some(policy)) => from_dto(policy.grants.as_deref().unwrap_or_default()),
        (None, None) => from_headers(headers),
    }
}

/// Grants of an AccessControlPolicy body.
fn from_dto(grants: &[dto::Grant]) -> Result<Vec<Grant>, GatewayError> {
    grants
        .iter()
        .map(|g| {
            let grantee = g
                .grantee
                .as_ref()
                .ok_or_else(|| malformed("a grant without a grantee"))?;
            let permission = g
                .permission
                .as_ref()
                .ok_or_else(|| malformed("a grant without a permission"))?;
            Ok(Grant {
                grantee: grantee_of(
                    grantee.id.as_deref(),
                    grantee.uri.as_deref(),
                    grantee.email_address.is_some(),
                )?,
                permission: permission_of(permission.as_str())?,
            })
        })
        .collect()
}

/// Grants of `x-amz-grant-*` headers: `id="alice", uri="http://acs.../AllUsers"`.
fn from_headers(headers: &[(Option<&str>, Permission)]) -> Result<Vec<Grant>, GatewayError> {
    let mut grants = Vec::new();
    for (value, permission) in headers {
        let Some(value) = value else { continue };
        for part in value.split(',') {
            let (kind, who) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| malformed("a grant header entry is type=\"value\""))?;
            let who = who.trim().trim_matches('"');
            let grantee = match kind.trim().to_ascii_lowercase().as_str() {
                "id" => grantee_of(Some(who), None, false)?,
                "uri" => grantee_of(None, Some(who), false)?,
                "emailaddress" => grantee_of(None, None, true)?,
                _ => return Err(malformed("grant headers take id, uri or emailAddress")),
            };
            grants.push(Grant {
                grantee,
                permission: *permission,
            });
        }
    }
    Ok(grants)
}

fn grantee_of(id: Option<&str>, uri: Option<&str>, email: bool) -> Result<Grantee, GatewayError> {
    match (id, uri) {
        (Some(id), _) if !id.is_empty() => Ok(Grantee::User(id.to_string())),
        (_, Some(ALL_USERS)) => Ok(Grantee::AllUsers),
        (_, Some(AUTHENTICATED_USERS)) => Ok(Grantee::AuthenticatedUsers),
        _ if email => Err(GatewayError::InvalidArgument(
            "grants by e-mail address are not supported; grant to the user's id (its name)".into(),
        )),
        _ => Err(malformed("unknown grantee")),
    }
}

fn permission_of(p: &str) -> Result<Permission, GatewayError> {
    Ok(match p {
        "FULL_CONTROL" => Permission::FullControl,
        "READ" => Permission::Read,
        "WRITE" => Permission::Write,
        "READ_ACP" => Permission::ReadAcp,
        "WRITE_ACP" => Permission::WriteAcp,
        _ => return Err(malformed("unknown permission")),
    })
}

fn malformed(what: &str) -> GatewayError {
    GatewayError::MalformedAcl(what.to_string())
}

/// The owner and grants as S3 shows them: the owner's full control first.
fn to_dto(owner: &str, extra: &[Grant]) -> (dto::Owner, Vec<dto::Grant>) {
    let owner_grant = Grant {
        grantee: Grantee::User(owner.to_string()),
        permission: Permission::FullControl,
    };
    let grants = std::iter::once(&owner_grant)
        .chain(extra)
        .map(|g| {
            let (type_, id, uri) = match &g.grantee {
                Grantee::User(name) => ("CanonicalUser", Some(name.clone()), None),
                Grantee::AllUsers => ("Group", None, Some(ALL_USERS.to_string())),
                Grantee::AuthenticatedUsers => {
                    ("Group", None, Some(AUTHENTICATED_USERS.to_string()))
                }
            };
            let permission = match g.permission {
                Permission::FullControl => "FULL_CONTROL",
                Permission::Read => "READ",
                Permission::Write => "WRITE",
                Permission::ReadAcp => "READ_ACP",
                Permission::WriteAcp => "WRITE_ACP",
            };
            dto::Grant {
                grantee: Some(dto::Grantee {
                    display_name: id.clone(),
                    email_address: None,
                    id,
                    type_: dto::Type::from_static(type_),
                    uri,
                }),
                permission: Some(dto::Permission::from_static(permission)),
            }
        })
        .collect();
    let owner = dto::Owner {
        display_name: Some(owner.to_string()),
        id: Some(owner.to_string()),
    };
    (owner, grants)
}
