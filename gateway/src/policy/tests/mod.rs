//! Policy and ACL tests at the module's boundary: AWS's documented example bucket policies
//! (`examples`), the semantics those examples leave open (`semantics`), what
//! PutBucketPolicy accepts and what counts as public (`validation`), actions and ACLs (`acl`),
//! and property tests of the pure cores (`properties`). Every evaluation case goes through
//! `check`.

mod acl;
mod examples;
mod properties;
mod semantics;
mod validation;

use super::{resource_arn, Context, Decision, Policy, Principal};

const B: &str = "amzn-s3-demo-bucket";

/// One request against a policy: who, what, on which key (`None`: the bucket), with which
/// condition values (a key given twice has two values), and the expected decision.
type Row<'a> = (
    Principal<'a>,
    &'a str,
    Option<&'a str>,
    &'a [(&'a str, &'a str)],
    Decision,
);

fn context(pairs: &[(&str, &str)]) -> Context {
    let mut cx = Context::new();
    for (key, value) in pairs {
        cx.insert(key, *value);
    }
    cx
}

fn check(policy: &str, rows: &[Row<'_>]) {
    let parsed = Policy::parse(policy, B).unwrap_or_else(|e| panic!("{e}\n{policy}"));
    for (principal, action, key, pairs, expected) in rows {
        let resource = resource_arn(B, *key);
        let got = parsed.evaluate(principal, action, &resource, &context(pairs));
        assert_eq!(
            got, *expected,
            "{principal:?} {action} {resource} {pairs:?}\n{policy}"
        );
    }
}
