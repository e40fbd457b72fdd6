//! `gateway admin user|key`: users and access keys, written to the cluster's replicated
//! metadata (the IAM partition) with the same quorum client gateways use, so every gateway sees
//! a change within [`dmpstore_common::limits::KEY_CACHE_TTL`] (ADR 0007).

use crate::config::GatewayConfig;
use crate::meta;
use crate::state::GatewayState;
use anyhow::{bail, Context};
use dmpstore_common::record::{
    access_key_key, user_key, AccessKeyRecord, KeyScope, MetaValue, UserRecord, IAM_PARTITION,
};
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Characters AWS IAM allows in a user name, and its length limit.
const USER_NAME_CHARS: &str = "+=,.@_-";
const MAX_USER_NAME_CHARS: usize = 64;

/// A key as created: the only time its secret is shown.
#[derive(Debug, Serialize)]
pub struct NewKey {
    pub user: String,
    pub access_key: String,
    pub secret_key: String,
    pub expires_ms: Option<u64>,
    pub read_only: bool,
    pub prefixes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct UserSummary {
    pub name: String,
    pub created_ms: u64,
    pub keys: usize,
}

/// A key as listed (without its secret).
#[derive(Debug, Serialize)]
pub struct KeySummary {
    pub access_key: String,
    pub created_ms: u64,
    pub disabled: bool,
    pub expires_ms: Option<u64>,
    pub read_only: bool,
    pub prefixes: Vec<String>,
}

/// A metadata client for one admin command; [`finish`] lets its write stragglers land.
fn open(config: &GatewayConfig) -> anyhow::Result<Arc<GatewayState>> {
    Ok(Arc::new(GatewayState::new(config.clone())?))
}

async fn finish(state: Arc<GatewayState>) {
    state.tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), state.tasks.wait()).await;
}

/// Creates user `name` with one access key.
pub async fn create_user(config: &GatewayConfig, name: &str) -> anyhow::Result<NewKey> {
    check_user_name(name)?;
    let state = open(config)?;
    if state.identities.is_admin_name(name) {
        bail!("{name:?} is the name of an administrator in the gateway config");
    }
    if find_user(&state, name).await?.is_some() {
        bail!("user {name:?} already exists");
    }
    let user = MetaValue::User(UserRecord {
        name: name.to_string(),
        created_ms: GatewayState::now_ms(),
    });
    meta::put(&state, IAM_PARTITION, &user_key(name), &user).await?;
    let key = put_key(&state, name, KeyScope::default(), None).await?;
    finish(state).await;
    Ok(key)
}

pub async fn list_users(config: &GatewayConfig) -> anyhow::Result<Vec<UserSummary>> {
    let state = open(config)?;
    let keys = all_keys(&state).await?;
    let users = scan_all(&state, "user/")
        .await?
        .into_iter()
        .filter_map(|(_, v)| match v {
            MetaValue::User(u) => Some(UserSummary {
                keys: keys.iter().filter(|(_, k)| k.user == u.name).count(),
                name: u.name,
                created_ms: u.created_ms,
            }),
            _ => None,
        })
        .collect();
    finish(state).await;
    Ok(users)
}

/// Deletes user `name` and its keys. Refused while the user owns buckets: they would be left
/// to administrators only.
pub async fn delete_user(config: &GatewayConfig, name: &str) -> anyhow::Result<usize> {
    let state = open(config)?;
    if find_user(&state, name).await?.is_none() {
        bail!("no user {name:?}");
    }
    let owned: Vec<String> = crate::buckets::list(&state)
        .await?
        .into_iter()
        .filter(|(_, b)| b.access.owner == name)
        .map(|(bucket, _)| bucket)
        .collect();
    if !owned.is_empty() {
        bail!("user {name:?} owns buckets {owned:?}; delete them first");
    }
    let mut deleted = 0;
    for (access_key, key) in all_keys(&state).await? {
        if key.user == name {
            tombstone(&state, &access_key_key(&access_key)).await?;
            deleted += 1;
        }
    }
    tombstone(&state, &user_key(name)).await?;
    finish(state).await;
    Ok(deleted)
}

/// Creates another key for `user`, limited by `scope`, expiring after `expires_in`.
pub async fn create_key(
    config: &GatewayConfig,
    user: &str,
    scope: KeyScope,
    expires_in: Option<Duration>,
) -> anyhow::Result<NewKey> {
    check_scope(&scope)?;
    let state = open(config)?;
    if find_user(&state, user).await?.is_none() {
        bail!("no user {user:?}");
    }
    let expires_ms = expires_in.map(|d| GatewayState::now_ms() + d.as_millis() as u64);
    let key = put_key(&state, user, scope, expires_ms).await?;
    finish(state).await;
    Ok(key)
}

pub async fn list_keys(config: &GatewayConfig, user: &str) -> anyhow::Result<Vec<KeySummary>> {
    let state = open(config)?;
    if find_user(&state, user).await?.is_none() {
        bail!("no user {user:?}");
    }
    let keys = all_keys(&state)
        .await?
        .into_iter()
        .filter(|(_, k)| k.user == user)
        .map(|(access_key, k)| KeySummary {
            access_key,
            created_ms: k.created_ms,
            disabled: k.disabled,
            expires_ms: k.expires_ms,
            read_only: k.scope.read_only,
            prefixes: k.scope.prefixes,
        })
        .collect();
    finish(state).await;
    Ok(keys)
}

/// Disables (or enables again) key `access_key` of `user`.
pub async fn set_key_disabled(
    config: &GatewayConfig,
    user: &str,
    access_key: &str,
    disabled: bool,
) -> anyhow::Result<()> {
    let state = open(config)?;
    let mut key = users_key(&state, user, access_key).await?;
    key.disabled = disabled;
    let value = MetaValue::AccessKey(key);
    meta::put(&state, IAM_PARTITION, &access_key_key(access_key), &value).await?;
    finish(state).await;
    Ok(())
}

pub async fn delete_key(
    config: &GatewayConfig,
    user: &str,
    access_key: &str,
) -> anyhow::Result<()> {
    let state = open(config)?;
    users_key(&state, user, access_key).await?;
    tombstone(&state, &access_key_key(access_key)).await?;
    finish(state).await;
    Ok(())
}

async fn put_key(
    state: &Arc<GatewayState>,
    user: &str,
    scope: KeyScope,
    expires_ms: Option<u64>,
) -> anyhow::Result<NewKey> {
    // The thread's generator is not Send: dropped before the first await.
    let (access_key, secret_key) = {
        let mut rng = rand::rng();
        let access_key = format!(
            "DK{}",
            Alphanumeric
                .sample_string(&mut rng, 18)
                .to_ascii_uppercase()
        );
        (access_key, Alphanumeric.sample_string(&mut rng, 40))
    };
    let record = MetaValue::AccessKey(AccessKeyRecord {
        user: user.to_string(),
        secret_key: secret_key.clone(),
        created_ms: GatewayState::now_ms(),
        disabled: false,
        expires_ms,
        scope: scope.clone(),
    });
    meta::put(state, IAM_PARTITION, &access_key_key(&access_key), &record).await?;
    Ok(NewKey {
        user: user.to_string(),
        access_key,
        secret_key,
        expires_ms,
        read_only: scope.read_only,
        prefixes: scope.prefixes,
    })
}

async fn find_user(state: &Arc<GatewayState>, name: &str) -> anyhow::Result<Option<UserRecord>> {
    match meta::get(state, IAM_PARTITION, &user_key(name)).await? {
        Some(MetaValue::User(u)) => Ok(Some(u)),
        _ => Ok(None),
    }
}

/// Key `access_key`, which must belong to `user`.
async fn users_key(
    state: &Arc<GatewayState>,
    user: &str,
    access_key: &str,
) -> anyhow::Result<AccessKeyRecord> {
    match meta::get(state, IAM_PARTITION, &access_key_key(access_key)).await? {
        Some(MetaValue::AccessKey(k)) if k.user == user => Ok(k),
        _ => bail!("user {user:?} has no access key {access_key:?}"),
    }
}

async fn tombstone(state: &Arc<GatewayState>, key: &str) -> anyhow::Result<()> {
    let value = MetaValue::Tombstone {
        deleted_ms: GatewayState::now_ms(),
    };
    meta::put(state, IAM_PARTITION, key, &value).await?;
    Ok(())
}

async fn all_keys(state: &Arc<GatewayState>) -> anyhow::Result<Vec<(String, AccessKeyRecord)>> {
    Ok(scan_all(state, "key/")
        .await?
        .into_iter()
        .filter_map(|(k, v)| match v {
            MetaValue::AccessKey(key) => Some((k.trim_start_matches("key/").to_string(), key)),
            _ => None,
        })
        .collect())
}

/// Every live record of the IAM partition under `prefix`.
async fn scan_all(
    state: &Arc<GatewayState>,
    prefix: &str,
) -> anyhow::Result<Vec<(String, MetaValue)>> {
    let mut out = Vec::new();
    let mut cursor = Vec::new();
    loop {
        let page = meta::scan(
            state,
            IAM_PARTITION,
            prefix,
            &cursor,
            dmpstore_common::limits::MAX_SCAN_ENTRIES,
            meta::Bodies::Without,
        )
        .await
        .context("scan users and keys")?;
        out.extend(page.entries.into_iter().filter(|(_, v)| !v.is_tombstone()));
        match page.next {
            Some(next) => cursor = next,
            None => return Ok(out),
        }
    }
}

fn check_user_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_USER_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || USER_NAME_CHARS.contains(c));
    if !ok {
        bail!("a user name is 1 to {MAX_USER_NAME_CHARS} letters, digits and {USER_NAME_CHARS}");
    }
    Ok(())
}

/// Scope entries are `bucket` or `bucket/prefix`, with a bucket name that could exist.
fn check_scope(scope: &KeyScope) -> anyhow::Result<()> {
    for entry in &scope.prefixes {
        let bucket = entry.split('/').next().unwrap_or("");
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid {
            bail!("--prefix {entry:?}: expected BUCKET or BUCKET/PREFIX with a valid bucket name");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_follow_iam_rules() {
        assert!(check_user_name("alice").is_ok());
        assert!(check_user_name("spark-job.etl@team_a").is_ok());
        assert!(check_user_name("").is_err());
        assert!(check_user_name("a b").is_err());
        assert!(check_user_name("x/y").is_err());
        assert!(check_user_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn scope_entries_name_buckets() {
        let scope = |p: &[&str]| KeyScope {
            read_only: false,
            prefixes: p.iter().map(|s| s.to_string()).collect(),
        };
        assert!(check_scope(&scope(&["events", "events/2026/"])).is_ok());
        assert!(check_scope(&scope(&["Events"])).is_err());
        assert!(check_scope(&scope(&["/x"])).is_err());
    }
}
