//! The cluster CA of the internal RPC's mutual TLS (DESIGN 13): one CA per cluster signs a
//! certificate for every storage node (server and client use, DNS name
//! [`RPC_NODE_NAME`]) and every gateway or operator (client use only, [`RPC_GATEWAY_NAME`]).
//! `gateway admin certs` and the dev and local clusters make them here, with rcgen.
//!
//! Files in a certificate directory: `ca.pem` and `ca.key` (keep the key off the hosts that
//! do not issue certificates), `node-ID.pem`/`.key`, `gateway-NAME.pem`/`.key`. Keys are
//! written with mode 0600, every file through a temporary name and a rename, so a process
//! reloading its certificate never reads half a file.

use crate::config::RpcTlsConfig;
use crate::tls::{RPC_GATEWAY_NAME, RPC_NODE_NAME};
use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

const CA_NAME: &str = "dmpstore cluster CA";
/// Validity of the CA.
const CA_DAYS: i64 = 3650;
/// Validity of a process's certificate; renew with `gateway admin certs issue` (processes
/// reload it without a restart).
const LEAF_DAYS: i64 = 825;

/// Who a certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Storage node `id`: serves RPCs and calls its peers.
    Node(u32),
    /// A gateway or an operator's admin commands: calls nodes only.
    Gateway(String),
}

impl Role {
    /// The stem of the role's files in a certificate directory.
    pub fn file_stem(&self) -> String {
        match self {
            Role::Node(id) => format!("node-{id}"),
            Role::Gateway(name) => format!("gateway-{name}"),
        }
    }
}

/// The cluster's CA: its certificate and the key that signs.
pub struct ClusterCa {
    cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

/// The CA's parameters: the same every time, so a CA loaded from its files issues
/// certificates that chain to the `ca.pem` made when it was generated.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl ClusterCa {
    /// A new CA with a new P-256 key.
    pub fn generate() -> anyhow::Result<ClusterCa> {
        let key = KeyPair::generate().context("generate the CA key")?;
        let mut params = ca_params();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(CA_DAYS);
        let cert = params
            .self_signed(&key)
            .context("sign the CA certificate")?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// The CA saved in `dir` by [`ClusterCa::save`].
    pub fn load(dir: &Path) -> anyhow::Result<ClusterCa> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        let cert_pem = std::fs::read_to_string(&cert_path)
            .with_context(|| format!("read {}", cert_path.display()))?;
        let key_pem = std::fs::read_to_string(&key_path)
            .with_context(|| format!("read {}", key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("parse the key {}", key_path.display()))?;
        Ok(ClusterCa { cert_pem, key })
    }

    /// Writes `ca.pem` and `ca.key` into `dir` (created if missing); refuses to replace a CA
    /// already there, since every certificate it issued would stop working.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        if dir.join("ca.key").exists() {
            bail!(
                "{} already holds a cluster CA; issue certificates from it instead",
                dir.display()
            );
        }
        write_file(
            &dir.join("ca.key"),
            self.key.serialize_pem().as_bytes(),
            true,
        )?;
        write_file(&dir.join("ca.pem"), self.cert_pem.as_bytes(), false)
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A new key and certificate for `role`, as PEM: `(certificate, key)`.
    pub fn issue(&self, role: &Role) -> anyhow::Result<(String, String)> {
        let (name, usages) = match role {
            Role::Node(_) => (
                RPC_NODE_NAME,
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            ),
            Role::Gateway(name) => {
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    bail!("a gateway's name is letters, digits, '-' and '_': {name:?}");
                }
                (RPC_GATEWAY_NAME, vec![ExtendedKeyUsagePurpose::ClientAuth])
            }
        };
        let key = KeyPair::generate().context("generate a key")?;
        let mut params =
            CertificateParams::new(vec![name.to_string()]).context("certificate parameters")?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, role.file_stem());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(LEAF_DAYS);
        let issuer = Issuer::new(ca_params(), &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .context("sign the certificate")?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issues a certificate for `role` into `dir` (`STEM.pem`, `STEM.key`, replacing older
    /// ones) and returns the `[rpc_tls]` section that uses it.
    pub fn issue_into(&self, dir: &Path, role: &Role) -> anyhow::Result<RpcTlsConfig> {
        let (cert, key) = self.issue(role)?;
        let stem = role.file_stem();
        let (cert_path, key_path) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        write_file(&key_path, key.as_bytes(), true)?;
        write_file(&cert_path, cert.as_bytes(), false)?;
        Ok(RpcTlsConfig {
            ca_cert: absolute(&dir.join("ca.pem"))?,
            cert: absolute(&cert_path)?,
            key: absolute(&key_path)?,
        })
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolve {}", path.display()))
}

/// Writes `bytes` to `path` through a temporary file and a rename (mode 0600 if `secret`).
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loaded_ca_issues_certificates_that_chain_to_the_saved_one() {
        let dir = tempfile::tempdir().unwrap();
        ClusterCa::generate().unwrap().save(dir.path()).unwrap();
        let ca = ClusterCa::load(dir.path()).unwrap();
        let node = ca.issue_into(dir.path(), &Role::Node(3)).unwrap();
        let gateway = ca
            .issue_into(dir.path(), &Role::Gateway("g1".into()))
            .unwrap();
        for c in [&node, &gateway] {
            crate::tls::RpcTls::load(&c.ca_cert, &c.cert, &c.key).unwrap();
        }
        assert!(ClusterCa::generate().unwrap().save(dir.path()).is_err());
        assert!(ca.issue(&Role::Gateway("../x".into())).is_err());
    }
}
