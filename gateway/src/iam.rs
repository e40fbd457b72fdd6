//! Identities: who signed a request. Users and their access keys live in replicated metadata
//! (the [`IAM_PARTITION`]), created and changed online by `gateway admin user|key` (ADR 0007);
//! the keys in the gateway's config file are the bootstrap administrators.
//!
//! A gateway caches what it read about a key for [`KEY_CACHE_TTL`], so a key disabled, deleted
//! or expired stops working on every gateway within that time (expiry is checked on every use).

use crate::config::Credential;
use crate::error::GatewayError;
use crate::meta;
use crate::state::GatewayState;
use dmpstore_common::limits::{KEY_CACHE_ENTRIES, KEY_CACHE_TTL};
use dmpstore_common::record::{
    access_key_key, AccessKeyRecord, KeyScope, MetaValue, IAM_PARTITION,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The signer of a request, as authorization sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A key of the gateway's config: may do everything, sees every bucket.
    Admin { name: String },
    /// A user's key, with that key's limits.
    User { name: String, scope: KeyScope },
}

impl Identity {
    /// The name buckets this identity creates are owned by.
    pub fn name(&self) -> &str {
        match self {
            Identity::Admin { name } | Identity::User { name, .. } => name,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Identity::Admin { .. })
    }
}

/// What one access key resolves to.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub secret_key: String,
    pub identity: Identity,
}

/// Resolves access keys: config keys first, then the cluster's users, through a small cache.
#[derive(Debug)]
pub struct Identities {
    bootstrap: HashMap<String, KeyEntry>,
    cache: Mutex<HashMap<String, (Instant, Option<AccessKeyRecord>)>>,
}

impl Identities {
    pub fn new(credentials: &[Credential]) -> Identities {
        let bootstrap = credentials
            .iter()
            .map(|c| {
                let entry = KeyEntry {
                    secret_key: c.secret_key.clone(),
                    identity: Identity::Admin {
                        name: c.user.clone(),
                    },
                };
                (c.access_key.clone(), entry)
            })
            .collect();
        Identities {
            bootstrap,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `name` is a bootstrap administrator's (no user may take it).
    pub fn is_admin_name(&self, name: &str) -> bool {
        self.bootstrap.values().any(|e| e.identity.name() == name)
    }

    /// The key's secret and identity; `Ok(None)` for a key that does not exist, is disabled
    /// or has expired.
    pub async fn resolve(
        &self,
        state: &Arc<GatewayState>,
        access_key: &str,
    ) -> Result<Option<KeyEntry>, GatewayError> {
        if let Some(entry) = self.bootstrap.get(access_key) {
            return Ok(Some(entry.clone()));
        }
        let record = match self.cached(access_key) {
            Some(record) => record,
            None => {
                let record = read(state, access_key).await?;
                self.remember(access_key, record.clone());
                record
            }
        };
        Ok(record.and_then(|r| usable(r, GatewayState::now_ms())))
    }

    fn cached(&self, access_key: &str) -> Option<Option<AccessKeyRecord>> {
        let cache = self.cache.lock().expect("identities lock");
        let (at, record) = cache.get(access_key)?;
        (at.elapsed() < KEY_CACHE_TTL).then(|| record.clone())
    }

    fn remember(&self, access_key: &str, record: Option<AccessKeyRecord>) {
        let mut cache = self.cache.lock().expect("identities lock");
        if cache.len() >= KEY_CACHE_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < KEY_CACHE_TTL);
            if cache.len() >= KEY_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(access_key.to_string(), (Instant::now(), record));
    }
}

async fn read(
    state: &Arc<GatewayState>,
    access_key: &str,
) -> Result<Option<AccessKeyRecord>, GatewayError> {
    match meta::get(state, IAM_PARTITION, &access_key_key(access_key)).await? {
        Some(MetaValue::AccessKey(k)) => Ok(Some(k)),
        _ => Ok(None),
    }
}

/// The entry of a stored key, unless it is disabled or expired at `now_ms`.
fn usable(key: AccessKeyRecord, now_ms: u64) -> Option<KeyEntry> {
    if key.disabled || key.expires_ms.is_some_and(|t| t <= now_ms) {
        return None;
    }
    Some(KeyEntry {
        secret_key: key.secret_key,
        identity: Identity::User {
            name: key.user,
            scope: key.scope,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(disabled: bool, expires_ms: Option<u64>) -> AccessKeyRecord {
        AccessKeyRecord {
            user: "alice".into(),
            secret_key: "s".into(),
            created_ms: 1,
            disabled,
            expires_ms,
            scope: KeyScope::default(),
        }
    }

    #[test]
    fn disabled_and_expired_keys_authenticate_nothing() {
        assert!(usable(key(false, None), 10).is_some());
        assert!(usable(key(true, None), 10).is_none());
        assert!(usable(key(false, Some(10)), 10).is_none());
        assert!(usable(key(false, Some(11)), 10).is_some());
    }

    #[test]
    fn config_keys_are_administrators() {
        let ids = Identities::new(&[Credential {
            access_key: "AK".into(),
            secret_key: "SK".into(),
            user: "root".into(),
        }]);
        assert!(ids.is_admin_name("root"));
        assert!(!ids.is_admin_name("alice"));
        assert!(ids.bootstrap["AK"].identity.is_admin());
    }
}
