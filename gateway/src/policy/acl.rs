//! Access control lists of buckets and objects: grants, canned ACLs, and what each
//! permission allows, after AWS's "Mapping of ACL permissions and access policy permissions".
//!
//! The grant types are part of the record format (`dmpstore_common::record`); an [`Acl`] is
//! built from a record's owner and grants when a request is checked.
//!
//! | permission   | on a bucket                                              | on an object                               |
//! |--------------|----------------------------------------------------------|--------------------------------------------|
//! | READ         | ListBucket, ListBucketVersions, ListBucketMultipartUploads | GetObject, GetObjectVersion, GetObjectTorrent |
//! | WRITE        | PutObject, DeleteObject (+ DeleteObjectVersion for the bucket owner) | -                              |
//! | READ_ACP     | GetBucketAcl                                             | GetObjectAcl, GetObjectVersionAcl          |
//! | WRITE_ACP    | PutBucketAcl                                             | PutObjectAcl, PutObjectVersionAcl          |
//! | FULL_CONTROL | all of the above                                         | all of the above                           |
//!
//! The owner of a bucket or object may always read and write its ACL (READ_ACP and WRITE_ACP
//! are implied), as in S3, so an owner cannot lock itself out.

use super::{PolicyError, Principal};
use serde::{Deserialize, Serialize};

/// Grants are stored in bucket records, so their types live with the record format.
pub use dmpstore_common::record::{AclGrant as Grant, Grantee, Permission};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    pub owner: String,
    pub grants: Vec<Grant>,
}

impl Acl {
    /// The default ACL: the owner has FULL_CONTROL.
    pub fn private(owner: &str) -> Acl {
        Acl {
            owner: owner.to_owned(),
            grants: vec![grant(
                Grantee::User(owner.to_owned()),
                Permission::FullControl,
            )],
        }
    }

    /// A canned ACL (`x-amz-acl`) for a resource owned by `owner` in a bucket owned by
    /// `bucket_owner` (for a bucket, both are its owner). `aws-exec-read` and
    /// `log-delivery-write` are accepted and mean `private`: dmpstore has no EC2 or log
    /// delivery group to grant to.
    pub fn canned(name: &str, owner: &str, bucket_owner: &str) -> Result<Acl, PolicyError> {
        let mut acl = Acl::private(owner);
        let extra: &[(Grantee, Permission)] = match name {
            "private" | "aws-exec-read" | "log-delivery-write" => &[],
            "public-read" => &[(Grantee::AllUsers, Permission::Read)],
            "public-read-write" => &[
                (Grantee::AllUsers, Permission::Read),
                (Grantee::AllUsers, Permission::Write),
            ],
            "authenticated-read" => &[(Grantee::AuthenticatedUsers, Permission::Read)],
            "bucket-owner-read" => &[(Grantee::User(bucket_owner.to_owned()), Permission::Read)],
            "bucket-owner-full-control" => &[(
                Grantee::User(bucket_owner.to_owned()),
                Permission::FullControl,
            )],
            _ => return Err(PolicyError::new(format!("Unknown canned ACL {name}"))),
        };
        for (grantee, permission) in extra {
            let owner_again = *grantee == Grantee::User(owner.to_owned());
            if !owner_again {
                acl.grants.push(grant(grantee.clone(), *permission));
            }
        }
        Ok(acl)
    }

    /// Whether the ACL lets `principal` do `action` (`s3:GetObject`, compared
    /// case-insensitively). `on_object` says whose ACL this is: an object's (`true`) or a
    /// bucket's (`false`). Writes into a bucket (`s3:PutObject`, `s3:DeleteObject`) are
    /// granted by the bucket's ACL, so ask the bucket's ACL with `on_object` false for them.
    pub fn allows(&self, principal: &Principal, action: &str, on_object: bool) -> bool {
        let is_owner = matches!(principal, Principal::User(user) if *user == self.owner);
        if is_owner && acp_permission(action, on_object).is_some() {
            return true;
        }
        self.grants.iter().any(|g| {
            grantee_matches(&g.grantee, principal)
                && permission_allows(g.permission, action, on_object, is_owner)
        })
    }

    /// S3's notion of a public ACL: a grant to AllUsers or AuthenticatedUsers.
    pub fn is_public(&self) -> bool {
        self.grants
            .iter()
            .any(|g| matches!(g.grantee, Grantee::AllUsers | Grantee::AuthenticatedUsers))
    }
}

fn grant(grantee: Grantee, permission: Permission) -> Grant {
    Grant {
        grantee,
        permission,
    }
}

fn grantee_matches(grantee: &Grantee, principal: &Principal) -> bool {
    match (grantee, principal) {
        (Grantee::AllUsers, _) => true,
        (Grantee::AuthenticatedUsers, Principal::User(_)) => true,
        (Grantee::User(name), Principal::User(user)) => name == user,
        _ => false,
    }
}

fn permission_allows(permission: Permission, action: &str, on_object: bool, owner: bool) -> bool {
    let wanted = |p: Permission| permission == Permission::FullControl || permission == p;
    data_permission(action, on_object, owner)
        .or_else(|| acp_permission(action, on_object))
        .is_some_and(wanted)
}

/// READ or WRITE, for the actions they cover.
fn data_permission(action: &str, on_object: bool, owner: bool) -> Option<Permission> {
    let action = action.to_ascii_lowercase();
    let permission = match (on_object, action.as_str()) {
        (false, "s3:listbucket" | "s3:listbucketversions" | "s3:listbucketmultipartuploads") => {
            Permission::Read
        }
        (false, "s3:putobject" | "s3:deleteobject") => Permission::Write,
        (false, "s3:deleteobjectversion") if owner => Permission::Write,
        (true, "s3:getobject" | "s3:getobjectversion" | "s3:getobjecttorrent") => Permission::Read,
        _ => return None,
    };
    Some(permission)
}

/// READ_ACP or WRITE_ACP, for the actions they cover.
fn acp_permission(action: &str, on_object: bool) -> Option<Permission> {
    let action = action.to_ascii_lowercase();
    let permission = match (on_object, action.as_str()) {
        (false, "s3:getbucketacl") => Permission::ReadAcp,
        (false, "s3:putbucketacl") => Permission::WriteAcp,
        (true, "s3:getobjectacl" | "s3:getobjectversionacl") => Permission::ReadAcp,
        (true, "s3:putobjectacl" | "s3:putobjectversionacl") => Permission::WriteAcp,
        _ => return None,
    };
    Some(permission)
}
