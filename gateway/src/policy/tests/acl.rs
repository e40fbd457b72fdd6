//! S3 operations to IAM actions, and ACLs: permissions to actions, canned ACLs, encoding.

use crate::policy::acl::{Acl, Grant, Grantee, Permission};
use crate::policy::action_for;
use crate::policy::Principal::{Anonymous, User};

/// (operation, has version id, action, on an object)
const OPERATIONS: &[(&str, bool, &str, bool)] = &[
    ("GetObject", false, "s3:GetObject", true),
    ("GetObject", true, "s3:GetObjectVersion", true),
    ("HeadObject", false, "s3:GetObject", true),
    ("HeadObject", true, "s3:GetObjectVersion", true),
    ("PutObject", false, "s3:PutObject", true),
    ("CopyObject", false, "s3:PutObject", true),
    ("CreateMultipartUpload", false, "s3:PutObject", true),
    ("UploadPart", false, "s3:PutObject", true),
    ("UploadPartCopy", false, "s3:PutObject", true),
    ("CompleteMultipartUpload", false, "s3:PutObject", true),
    (
        "AbortMultipartUpload",
        false,
        "s3:AbortMultipartUpload",
        true,
    ),
    ("ListParts", false, "s3:ListMultipartUploadParts", true),
    ("DeleteObject", false, "s3:DeleteObject", true),
    ("DeleteObject", true, "s3:DeleteObjectVersion", true),
    ("DeleteObjects", false, "s3:DeleteObject", true),
    ("GetObjectTagging", true, "s3:GetObjectVersionTagging", true),
    ("PutObjectTagging", false, "s3:PutObjectTagging", true),
    (
        "DeleteObjectTagging",
        true,
        "s3:DeleteObjectVersionTagging",
        true,
    ),
    ("GetObjectAcl", true, "s3:GetObjectVersionAcl", true),
    ("PutObjectAcl", false, "s3:PutObjectAcl", true),
    ("ListObjects", false, "s3:ListBucket", false),
    ("ListObjectsV2", false, "s3:ListBucket", false),
    ("HeadBucket", false, "s3:ListBucket", false),
    ("ListObjectVersions", false, "s3:ListBucketVersions", false),
    (
        "ListMultipartUploads",
        false,
        "s3:ListBucketMultipartUploads",
        false,
    ),
    ("ListBuckets", false, "s3:ListAllMyBuckets", false),
    ("CreateBucket", false, "s3:CreateBucket", false),
    ("DeleteBucket", false, "s3:DeleteBucket", false),
    ("GetBucketLocation", false, "s3:GetBucketLocation", false),
    ("PutBucketPolicy", false, "s3:PutBucketPolicy", false),
    (
        "GetBucketPolicyStatus",
        false,
        "s3:GetBucketPolicyStatus",
        false,
    ),
    ("GetBucketAcl", false, "s3:GetBucketAcl", false),
    (
        "PutBucketVersioning",
        false,
        "s3:PutBucketVersioning",
        false,
    ),
    (
        "PutBucketOwnershipControls",
        false,
        "s3:PutBucketOwnershipControls",
        false,
    ),
    (
        "DeleteBucketOwnershipControls",
        false,
        "s3:PutBucketOwnershipControls",
        false,
    ),
    (
        "GetPublicAccessBlock",
        false,
        "s3:GetBucketPublicAccessBlock",
        false,
    ),
    (
        "DeletePublicAccessBlock",
        false,
        "s3:PutBucketPublicAccessBlock",
        false,
    ),
    (
        "GetBucketLifecycleConfiguration",
        false,
        "s3:GetLifecycleConfiguration",
        false,
    ),
    (
        "DeleteBucketLifecycle",
        false,
        "s3:PutLifecycleConfiguration",
        false,
    ),
    ("DeleteBucketTagging", false, "s3:PutBucketTagging", false),
    ("GetBucketCors", false, "s3:GetBucketCORS", false),
];

#[test]
fn actions_of_operations() {
    for (op, version, name, on_object) in OPERATIONS {
        let action = action_for(op, *version).map(|a| (a.name, a.on_object));
        assert_eq!(action, Some((*name, *on_object)), "{op}");
    }
    assert_eq!(action_for("NoSuchOperation", false), None);
}

#[test]
fn acl_permissions_map_to_actions() {
    let bucket_acl = Acl {
        owner: "owner".into(),
        grants: vec![
            Grant {
                grantee: Grantee::User("owner".into()),
                permission: Permission::FullControl,
            },
            Grant {
                grantee: Grantee::AllUsers,
                permission: Permission::Read,
            },
            Grant {
                grantee: Grantee::AuthenticatedUsers,
                permission: Permission::Write,
            },
            Grant {
                grantee: Grantee::User("auditor".into()),
                permission: Permission::ReadAcp,
            },
            Grant {
                grantee: Grantee::User("admin".into()),
                permission: Permission::WriteAcp,
            },
        ],
    };
    let bucket_cases = [
        (Anonymous, "s3:ListBucket", true),
        (Anonymous, "s3:ListBucketVersions", true),
        (Anonymous, "s3:ListBucketMultipartUploads", true),
        (Anonymous, "s3:PutObject", false),
        (User("u"), "s3:PutObject", true),
        (User("u"), "s3:DeleteObject", true),
        (User("u"), "s3:DeleteObjectVersion", false),
        (User("owner"), "s3:DeleteObjectVersion", true),
        (User("u"), "s3:GetBucketAcl", false),
        (User("auditor"), "s3:GetBucketAcl", true),
        (User("auditor"), "s3:PutBucketAcl", false),
        (User("admin"), "s3:PutBucketAcl", true),
        (User("owner"), "s3:PutBucketAcl", true),
        (User("owner"), "s3:PutBucketPolicy", false),
        (Anonymous, "s3:GetObject", false),
    ];
    for (principal, action, allowed) in bucket_cases {
        assert_eq!(
            bucket_acl.allows(&principal, action, false),
            allowed,
            "{principal:?} {action}"
        );
    }
    let object_acl = Acl::canned("public-read", "writer", "owner").expect("canned");
    let object_cases = [
        (Anonymous, "s3:GetObject", true),
        (Anonymous, "s3:getobjectversion", true),
        (Anonymous, "s3:GetObjectAcl", false),
        (Anonymous, "s3:PutObject", false),
        (User("writer"), "s3:PutObjectAcl", true),
        (User("writer"), "s3:GetObjectVersionAcl", true),
        (User("owner"), "s3:PutObjectAcl", false),
        (User("owner"), "s3:GetObject", true),
    ];
    for (principal, action, allowed) in object_cases {
        assert_eq!(
            object_acl.allows(&principal, action, true),
            allowed,
            "{principal:?} {action}"
        );
    }
}

#[test]
fn owner_keeps_acl_access_without_grants() {
    let acl = Acl {
        owner: "o".into(),
        grants: Vec::new(),
    };
    assert!(acl.allows(&User("o"), "s3:GetBucketAcl", false));
    assert!(acl.allows(&User("o"), "s3:PutObjectAcl", true));
    assert!(!acl.allows(&User("o"), "s3:GetObject", true));
}

#[test]
fn canned_acls() {
    use Grantee::{AllUsers, AuthenticatedUsers};
    use Permission::{FullControl, Read, Write};
    let user = |name: &str| Grantee::User(name.into());
    type Case = (&'static str, Vec<(Grantee, Permission)>, bool);
    let cases: Vec<Case> = vec![
        ("private", vec![(user("w"), FullControl)], false),
        (
            "public-read",
            vec![(user("w"), FullControl), (AllUsers, Read)],
            true,
        ),
        (
            "public-read-write",
            vec![
                (user("w"), FullControl),
                (AllUsers, Read),
                (AllUsers, Write),
            ],
            true,
        ),
        (
            "authenticated-read",
            vec![(user("w"), FullControl), (AuthenticatedUsers, Read)],
            true,
        ),
        (
            "bucket-owner-read",
            vec![(user("w"), FullControl), (user("b"), Read)],
            false,
        ),
        (
            "bucket-owner-full-control",
            vec![(user("w"), FullControl), (user("b"), FullControl)],
            false,
        ),
        ("aws-exec-read", vec![(user("w"), FullControl)], false),
        ("log-delivery-write", vec![(user("w"), FullControl)], false),
    ];
    for (name, grants, public) in cases {
        let acl = Acl::canned(name, "w", "b").expect(name);
        let got: Vec<_> = acl
            .grants
            .iter()
            .map(|g| (g.grantee.clone(), g.permission))
            .collect();
        assert_eq!((got, acl.is_public()), (grants, public), "{name}");
    }
    let own_bucket = Acl::canned("bucket-owner-full-control", "b", "b").expect("canned");
    assert_eq!(own_bucket, Acl::private("b"));
    assert!(Acl::canned("public", "w", "b").is_err());
}

#[test]
fn acl_serde_round_trip() {
    let acl = Acl::canned("public-read-write", "w", "b").expect("canned");
    let json = serde_json::to_string(&acl).expect("encode");
    assert_eq!(serde_json::from_str::<Acl>(&json).expect("decode"), acl);
}
