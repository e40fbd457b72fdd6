//! SigV4 credentials: s3s verifies signatures; this only looks up secret keys, through
//! [`crate::iam::Identities`]. An unknown, disabled or expired access key is
//! `403 InvalidAccessKeyId`, as S3 answers (s3s's `SimpleAuth` says NotSignedUp).

use crate::state::GatewayState;
use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};
use std::sync::Arc;

#[derive(Debug)]
pub struct KeyRing {
    state: Arc<GatewayState>,
}

impl KeyRing {
    pub fn new(state: Arc<GatewayState>) -> KeyRing {
        KeyRing { state }
    }
}

#[async_trait::async_trait]
impl S3Auth for KeyRing {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self
            .state
            .identities
            .resolve(&self.state, access_key)
            .await?
        {
            Some(entry) => Ok(SecretKey::from(entry.secret_key)),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS access key ID you provided does not exist in our records."
            )),
        }
    }
}
