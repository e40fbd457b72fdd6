//! SigV4 credentials: s3s verifies signatures; this only looks up secret keys. An unknown
//! access key is `403 InvalidAccessKeyId`, as S3 answers (s3s's `SimpleAuth` says NotSignedUp).

use crate::config::Credential;
use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};
use std::collections::HashMap;

#[derive(Debug)]
pub struct KeyRing {
    keys: HashMap<String, SecretKey>,
}

impl KeyRing {
    pub fn new(credentials: &[Credential]) -> KeyRing {
        KeyRing {
            keys: credentials
                .iter()
                .map(|c| (c.access_key.clone(), SecretKey::from(c.secret_key.clone())))
                .collect(),
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for KeyRing {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.keys.get(access_key) {
            Some(secret) => Ok(secret.clone()),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS access key ID you provided does not exist in our records."
            )),
        }
    }
}
