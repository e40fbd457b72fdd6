//! The cluster harness shared by dmpstore's integration tests and the benchmark tool.
//!
//! [`Cluster::start`] launches real `storage-node` and `gateway` processes through
//! `deploy/local-cluster.sh` (the same launcher users run), then lets a test kill, stop, restart
//! and corrupt them. [`client`] builds an `aws-sdk-s3` client for a gateway. Nothing here mocks
//! a component: every byte crosses real TCP into real RocksDB.

use anyhow::{bail, Context};
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub mod linearizability;
pub mod workload;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub s3_endpoints: Vec<String>,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub processes: Vec<ProcessInfo>,
    /// The CA that signed the gateways' certificates, when they serve HTTPS
    /// (`deploy/local-cluster.sh --tls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// The operator's certificate for the internal RPC's mutual TLS (admin calls, the nodes'
    /// `/metrics`).
    pub rpc_tls: RpcTlsInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpcTlsInfo {
    pub ca_cert: String,
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub role: String,
    pub id: String,
    pub pid: u32,
    pub addr: String,
    pub data_dir: Option<String>,
    pub config: String,
    /// A storage node's plain-HTTP health listener (`/health/live`, `/health/ready`).
    #[serde(default)]
    pub health_addr: Option<String>,
    /// A gateway's web console listener.
    #[serde(default)]
    pub console_addr: Option<String>,
}

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where the `storage-node` and `gateway` binaries are: `$DMPSTORE_BIN_DIR`, else the cargo
/// profile directory this test binary was built into (target/<profile>/deps/.. -> target/<profile>).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DMPSTORE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// A running local cluster; stopped (every process, whatever happened) when dropped.
#[derive(Debug)]
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub info: ClusterInfo,
}

impl Cluster {
    /// Starts `n_nodes` storage nodes and `n_gateways` gateways as separate processes.
    pub fn start(n_nodes: usize, n_gateways: usize) -> anyhow::Result<Cluster> {
        Cluster::start_with(n_nodes, n_gateways, &[])
    }

    /// Like [`Cluster::start`], with more options for `deploy/local-cluster.sh up`.
    pub fn start_with(
        n_nodes: usize,
        n_gateways: usize,
        options: &[&str],
    ) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("dmpstore-test-")
            .tempdir()?;
        let out = Command::new(repo_root().join("deploy/local-cluster.sh"))
            .arg("up")
            .arg(dir.path())
            .args([
                "--nodes",
                &n_nodes.to_string(),
                "--gateways",
                &n_gateways.to_string(),
            ])
            .args(options)
            .env("DMPSTORE_BIN_DIR", bin_dir())
            // Tests read these debug lines to see which path a request took.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| {
                    "info,s3s::ops=off,s3s::http::de=off,s3s::service=off,dmpstore_gateway::checksum=debug".into()
                }),
            )
            .stdin(Stdio::null())
            .output()
            .context("run deploy/local-cluster.sh up")?;
        let info_path = dir.path().join("cluster.json");
        if !out.status.success() {
            let logs = collect_logs(dir.path());
            bail!(
                "local-cluster.sh up failed: {}\n{}\n{logs}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let info: ClusterInfo = serde_json::from_slice(&std::fs::read(&info_path)?)?;
        Ok(Cluster { dir, info })
    }

    pub fn nodes(&self) -> Vec<&ProcessInfo> {
        self.info
            .processes
            .iter()
            .filter(|p| p.role == "storage-node")
            .collect()
    }

    pub fn node(&self, idx: usize) -> &ProcessInfo {
        self.nodes()[idx]
    }

    /// The Prometheus text of the storage node at `addr` (over the RPC's mutual TLS).
    pub fn node_metrics_at(&self, addr: &str) -> anyhow::Result<String> {
        node_metrics_text(&self.info.rpc_tls, addr)
    }

    /// An `aws-sdk-s3` client for gateway `gateway_idx`, trusting the cluster's CA if it
    /// serves HTTPS.
    pub fn client(&self, gateway_idx: usize) -> aws_sdk_s3::Client {
        self.client_as(gateway_idx, &self.info.access_key, &self.info.secret_key)
    }

    /// Like [`Cluster::client`], signing with another key (a user's).
    pub fn client_as(
        &self,
        gateway_idx: usize,
        access_key: &str,
        secret_key: &str,
    ) -> aws_sdk_s3::Client {
        let endpoint = &self.info.s3_endpoints[gateway_idx];
        let mut config = base_config(endpoint, access_key, secret_key, &self.info.region);
        if let (Some(ca), true) = (&self.info.ca_bundle, endpoint.starts_with("https://")) {
            config = config.http_client(https_client(Path::new(ca)));
        }
        aws_sdk_s3::Client::from_conf(config.build())
    }

    /// `kill -9` of storage node `idx`.
    pub fn kill_node(&self, idx: usize) -> anyhow::Result<()> {
        let pid = self.node(idx).pid;
        signal(pid, "KILL")?;
        wait_exit(pid, Duration::from_secs(20))
    }

    /// `kill -9` of gateway `idx`.
    pub fn kill_gateway(&self, idx: usize) -> anyhow::Result<()> {
        let pid = self
            .info
            .processes
            .iter()
            .filter(|p| p.role == "gateway")
            .nth(idx)
            .context("no such gateway")?
            .pid;
        signal(pid, "KILL")?;
        wait_exit(pid, Duration::from_secs(20))
    }

    /// Starts gateway `idx` again (after [`Cluster::kill_gateway`]) with its config and waits
    /// until it listens. With `clock_offset` (libfaketime's relative form, such as `-0.3` or
    /// `+10`, in seconds) the gateway runs under `faketime`, its wall clock that far off
    /// (monotonic time stays true, so timers do not drift).
    pub fn restart_gateway(
        &mut self,
        idx: usize,
        clock_offset: Option<&str>,
    ) -> anyhow::Result<()> {
        let (config, id) = {
            let p = self.gateway(idx)?;
            (p.config.clone(), p.id.clone())
        };
        let mut cmd = Command::new(bin_dir().join("gateway"));
        cmd.args(["serve", "--config", &config]).env(
            "RUST_LOG",
            std::env::var("RUST_LOG")
                .unwrap_or_else(|_| "info,s3s::ops=off,s3s::http::de=off,s3s::service=off".into()),
        );
        if let Some(offset) = clock_offset {
            // libfaketime preloaded into the gateway itself (the `faketime` wrapper would
            // fork, and the pid to kill would be the wrapper's).
            cmd.env("LD_PRELOAD", libfaketime()?)
                .env("FAKETIME", offset)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        self.adopt(
            cmd,
            &format!("logs/gateway-{}.log", idx + 1),
            "gateway",
            &id,
        )
    }

    /// The config file of gateway `idx`.
    pub fn gateway_config(&self, idx: usize) -> anyhow::Result<PathBuf> {
        Ok(PathBuf::from(&self.gateway(idx)?.config))
    }

    fn gateway(&self, idx: usize) -> anyhow::Result<&ProcessInfo> {
        self.info
            .processes
            .iter()
            .filter(|p| p.role == "gateway")
            .nth(idx)
            .context("no such gateway")
    }

    /// SIGSTOP to storage node `idx`: it keeps its connections open and answers nothing (a hung
    /// node, not a dead one).
    /// Restarts gateway `idx` with `extra_config` (top-level keys) put before its config, and
    /// with its clock off by `clock_offset` if given (see [`Cluster::restart_gateway`]).
    pub fn reconfigure_gateway(
        &mut self,
        idx: usize,
        extra_config: &str,
        clock_offset: Option<&str>,
    ) -> anyhow::Result<()> {
        let config = self.gateway_config(idx)?;
        let text = std::fs::read_to_string(&config)?;
        std::fs::write(&config, format!("{extra_config}{text}"))?;
        self.kill_gateway(idx)?;
        self.restart_gateway(idx, clock_offset)
    }

    /// SIGSTOP of gateway `idx`: its requests in flight stall, its leases run out.
    pub fn pause_gateway(&self, idx: usize) -> anyhow::Result<()> {
        signal(self.gateway(idx)?.pid, "STOP")
    }

    pub fn resume_gateway(&self, idx: usize) -> anyhow::Result<()> {
        signal(self.gateway(idx)?.pid, "CONT")
    }

    pub fn pause_node(&self, idx: usize) -> anyhow::Result<()> {
        signal(self.node(idx).pid, "STOP")
    }

    pub fn resume_node(&self, idx: usize) -> anyhow::Result<()> {
        signal(self.node(idx).pid, "CONT")
    }

    /// SIGTERM to storage node `idx` and wait until it has flushed and exited.
    pub fn stop_node(&self, idx: usize) -> anyhow::Result<()> {
        let pid = self.node(idx).pid;
        signal(pid, "TERM")?;
        wait_exit(pid, Duration::from_secs(60))
    }

    /// Starts storage node `idx` again with its config and waits until it listens.
    pub fn restart_node(&mut self, idx: usize) -> anyhow::Result<()> {
        self.restart_node_with_env(idx, &[])
    }

    /// [`Cluster::restart_node`] with more environment variables (test fault points).
    pub fn restart_node_with_env(
        &mut self,
        idx: usize,
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let (config, id) = {
            let p = self.node(idx);
            (p.config.clone(), p.id.clone())
        };
        let mut cmd = Command::new(bin_dir().join("storage-node"));
        cmd.arg("--config").arg(&config);
        cmd.envs(env.iter().copied());
        let log = format!("logs/node-{}.log", id.trim_start_matches('n'));
        self.adopt(cmd, &log, "storage-node", &id)
    }

    /// Spawns `cmd` as the new process of the cluster's `role` `id` (output appended to
    /// `log`, relative to the cluster's directory), records its pid in `cluster.json`, and
    /// waits until it listens on that process's address.
    fn adopt(&mut self, mut cmd: Command, log: &str, role: &str, id: &str) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(log))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {role} {id}"))?;
        let pid = child.id();
        // The process is owned by the cluster from now on: `down` stops it by this pid.
        std::mem::forget(child);
        let p = self
            .info
            .processes
            .iter_mut()
            .find(|p| p.role == role && p.id == id)
            .context("no such process in the cluster")?;
        p.pid = pid;
        let addr = p.addr.clone();
        std::fs::write(
            self.dir.path().join("cluster.json"),
            serde_json::to_vec_pretty(&self.info)?,
        )?;
        wait_listening(&addr, pid, Duration::from_secs(60))
    }

    /// Starts one more storage node and adds it to the running cluster
    /// (`deploy/local-cluster.sh add`); returns its index.
    pub fn add_node(&mut self) -> anyhow::Result<usize> {
        let out = Command::new(repo_root().join("deploy/local-cluster.sh"))
            .arg("add")
            .arg(self.dir.path())
            .env("DMPSTORE_BIN_DIR", bin_dir())
            .stdin(Stdio::null())
            .output()
            .context("run deploy/local-cluster.sh add")?;
        let info: ClusterInfo =
            serde_json::from_slice(&std::fs::read(self.dir.path().join("cluster.json"))?)?;
        // Whatever happened, the new process (if any) is in cluster.json and gets stopped.
        self.info = info;
        if !out.status.success() {
            bail!(
                "local-cluster.sh add failed: {}\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout),
                self.logs()
            );
        }
        Ok(self.nodes().len() - 1)
    }

    /// Issues a new certificate for the gateways from the cluster's test CA, in place of the
    /// old one (`deploy/local-cluster.sh renew-cert`); returns the new certificate's file.
    pub fn renew_tls_certificate(&self) -> anyhow::Result<PathBuf> {
        let out = Command::new(repo_root().join("deploy/local-cluster.sh"))
            .arg("renew-cert")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .context("run deploy/local-cluster.sh renew-cert")?;
        if !out.status.success() {
            bail!(
                "local-cluster.sh renew-cert failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(self.dir.path().join("tls/server.pem"))
    }

    pub fn node_log(&self, idx: usize) -> String {
        let id = self.node(idx).id.trim_start_matches('n').to_string();
        std::fs::read_to_string(self.dir.path().join(format!("logs/node-{id}.log")))
            .unwrap_or_default()
    }

    /// `gateway admin status --json` against this cluster, as an operator would run it.
    pub fn admin_status(&self) -> anyhow::Result<serde_json::Value> {
        let out = self.admin(&["status", "--json"])?;
        Ok(serde_json::from_str(&out)?)
    }

    /// Runs `gateway admin ARGS --config GATEWAY_CONFIG` and returns its standard output.
    pub fn admin(&self, args: &[&str]) -> anyhow::Result<String> {
        let gateway = self
            .info
            .processes
            .iter()
            .find(|p| p.role == "gateway")
            .context("no gateway in the cluster")?;
        let out = Command::new(bin_dir().join("gateway"))
            .arg("admin")
            .args(args)
            .args(["--config", &gateway.config])
            .stdin(Stdio::null())
            .output()
            .context("run gateway admin")?;
        if !out.status.success() {
            bail!(
                "gateway admin {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops node `idx`, deletes its data directory, and starts it again empty (a node
    /// replaced by a new machine with the same identity).
    pub fn wipe_node(&mut self, idx: usize) -> anyhow::Result<()> {
        self.kill_node(idx)?;
        let dir = self
            .node(idx)
            .data_dir
            .clone()
            .context("node has a data dir")?;
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {dir}"))?;
        self.restart_node(idx)
    }

    pub fn gateway_log(&self, idx: usize) -> String {
        std::fs::read_to_string(
            self.dir
                .path()
                .join(format!("logs/gateway-{}.log", idx + 1)),
        )
        .unwrap_or_default()
    }

    /// Fails the test if any process logged at ERROR level: ERROR means a human must look
    /// (STYLE 10), so a test that provokes one has found a bug or a mislabelled log line.
    pub fn assert_no_error_logs(&self) {
        let mut errors = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("logs")) {
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                errors.extend(
                    text.lines()
                        .filter(|l| l.contains(" ERROR "))
                        .map(|l| format!("{}: {l}", e.path().display())),
                );
            }
        }
        assert!(
            errors.is_empty(),
            "unexpected ERROR log lines:\n{}",
            errors.join("\n")
        );
    }

    pub fn logs(&self) -> String {
        collect_logs(self.dir.path())
    }

    /// Copies every process's whole log into `dest` (created), to keep them past the
    /// cluster's temporary directory when a test has found something to look into.
    pub fn save_logs(&self, dest: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dest)?;
        for e in std::fs::read_dir(self.dir.path().join("logs"))?.flatten() {
            std::fs::copy(e.path(), dest.join(e.file_name()))?;
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("deploy/local-cluster.sh"))
            .arg("down")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .output();
    }
}

/// Debian's multithreaded libfaketime (package `faketime`, installed by `scripts/setup.sh
/// --test-clients`).
fn libfaketime() -> anyhow::Result<PathBuf> {
    let lib = std::fs::read_dir("/usr/lib")?
        .flatten()
        .map(|d| d.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists())
        .context("libfaketimeMT.so.1 not found: install Debian's faketime package")?;
    Ok(lib)
}

fn collect_logs(dir: &Path) -> String {
    let mut out = String::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("logs")) {
        for e in entries.flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out.push_str(&format!("--- {}\n", e.path().display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        bail!("kill -{sig} {pid} failed");
    }
    Ok(())
}

fn alive(pid: u32) -> bool {
    // Gone once every thread has exited: a zombie leader (exited, not yet reaped) whose
    // other threads are still tearing down keeps its sockets and files open.
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !(state.starts_with('Z') || state.starts_with('X'))
        })
    })
}

pub fn wait_exit(pid: u32, deadline: Duration) -> anyhow::Result<()> {
    wait_until(deadline, || !alive(pid)).with_context(|| format!("process {pid} did not exit"))
}

fn wait_listening(addr: &str, pid: u32, deadline: Duration) -> anyhow::Result<()> {
    wait_until(deadline, || {
        if !alive(pid) {
            return true;
        }
        std::net::TcpStream::connect(addr).is_ok()
    })?;
    if !alive(pid) {
        bail!("process {pid} exited during start-up");
    }
    Ok(())
}

/// Polls `cond` until it holds or `deadline` passes.
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > deadline {
            bail!("condition not met within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// An `aws-sdk-s3` client for one endpoint, path-style, with the SDK's default checksum and
/// retry settings.
pub fn client(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    region: &str,
) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(base_config(endpoint, access_key, secret_key, region).build())
}

/// The SDK's HTTPS client, trusting only the PEM CA certificate(s) in `ca_bundle`.
pub fn https_client(ca_bundle: &Path) -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    let pem = std::fs::read(ca_bundle)
        .unwrap_or_else(|e| panic!("read CA bundle {}: {e}", ca_bundle.display()));
    let context = tls::TlsContext::builder()
        .with_trust_store(tls::TrustStore::empty().with_pem_certificate(pem))
        .build()
        .expect("a TLS context from a PEM CA");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https()
}

fn base_config(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
    region: &str,
) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(
            access_key,
            secret_key,
            None,
            None,
            "dmpstore-tests",
        ))
        .force_path_style(true)
}

/// Like [`client`], but every operation must finish within `timeout` (retries included).
pub fn client_with_timeout(
    cluster: &Cluster,
    gateway_idx: usize,
    timeout: Duration,
) -> aws_sdk_s3::Client {
    client_for(&cluster.info, gateway_idx, timeout)
}

/// An `aws-sdk-s3` client for gateway `gateway_idx` of a cluster described by `info`, every
/// operation bounded by `timeout` (retries included).
pub fn client_for(info: &ClusterInfo, gateway_idx: usize, timeout: Duration) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(client_config(info, gateway_idx, timeout).build())
}

/// [`client_for`] that sends every operation exactly once: no SDK retries, so a recorded
/// history has one request per operation (a retried PUT is two writes of one value, which a
/// linearizability checker cannot tell from a value that came back).
pub fn single_attempt_client_for(
    info: &ClusterInfo,
    gateway_idx: usize,
    timeout: Duration,
) -> aws_sdk_s3::Client {
    let config = client_config(info, gateway_idx, timeout)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn client_config(
    info: &ClusterInfo,
    gateway_idx: usize,
    timeout: Duration,
) -> aws_sdk_s3::config::Builder {
    let config = aws_sdk_s3::Config::builder();
    let config = match &info.ca_bundle {
        Some(ca) => config.http_client(https_client(Path::new(ca))),
        None => config,
    };
    config
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&info.s3_endpoints[gateway_idx])
        .region(Region::new(info.region.clone()))
        .credentials_provider(Credentials::new(
            &info.access_key,
            &info.secret_key,
            None,
            None,
            "dmpstore-tests",
        ))
        .force_path_style(true)
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .operation_timeout(timeout)
                .build(),
        )
}

/// Deterministic pseudo-random bytes: the same `(seed, len)` always gives the same data, and
/// different seeds give different data, so a read can be checked without keeping a copy.
pub fn test_data(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut counter = 0u64;
    while out.len() < len {
        let mut h = blake3::Hasher::new();
        h.update(&seed.to_le_bytes());
        h.update(&counter.to_le_bytes());
        let mut reader = h.finalize_xof();
        let mut block = [0u8; 4096];
        reader.fill(&mut block);
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(len);
    out
}

pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

/// PUT `data` and return the ETag.
pub async fn put_bytes(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    data: &[u8],
) -> anyhow::Result<String> {
    let out = c
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(data.to_vec()))
        .send()
        .await
        .with_context(|| format!("put {bucket}/{key}"))?;
    Ok(out.e_tag().unwrap_or_default().to_string())
}

/// GET a whole object.
pub async fn get_bytes(c: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<Vec<u8>> {
    let out = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .with_context(|| format!("get {bucket}/{key}"))?;
    Ok(out
        .body
        .collect()
        .await
        .with_context(|| format!("read body of {bucket}/{key}"))?
        .into_bytes()
        .to_vec())
}

/// Every file under `dir` (recursively) whose name ends in `.ext`.
pub fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(files_with_extension(&p, ext));
        } else if p.extension().is_some_and(|e| e == ext) {
            out.push(p);
        }
    }
    out
}

/// Flips one byte inside every occurrence of `marker` in the RocksDB blob files under `dir`
/// (where a stopped node keeps its chunk bytes); returns how many occurrences it damaged.
pub fn corrupt_in_blob_files(dir: &Path, marker: &[u8]) -> usize {
    let mut total = 0;
    for file in files_with_extension(dir, "blob") {
        let mut bytes = std::fs::read(&file).expect("read blob file");
        let hits: Vec<usize> = bytes
            .windows(marker.len())
            .enumerate()
            .filter(|(_, w)| *w == marker)
            .map(|(i, _)| i)
            .collect();
        for &i in &hits {
            bytes[i + marker.len() / 2] ^= 0xFF;
        }
        if !hits.is_empty() {
            std::fs::write(&file, bytes).expect("write blob file");
        }
        total += hits.len();
    }
    total
}

/// The body of `GET url` (plain HTTP, for `/metrics`), fetched with Python's standard library.
pub fn http_get_text(url: &str) -> anyhow::Result<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .context("run python3")?;
    if !out.status.success() {
        bail!("GET {url}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The body of `GET /metrics` from the storage node at `addr`, over the internal RPC's mutual
/// TLS with the operator's certificate in `tls` (Python's standard library).
pub fn node_metrics_text(tls: &RpcTlsInfo, addr: &str) -> anyhow::Result<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            NODE_GET_PY,
            addr,
            "/metrics",
            &tls.ca_cert,
            &tls.cert,
            &tls.key,
        ])
        .stdin(Stdio::null())
        .output()
        .context("run python3")?;
    if !out.status.success() {
        bail!(
            "GET https://{addr}/metrics: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `GET PATH` from a storage node over mutual TLS: the node must show a certificate for
/// `node.dmpstore.internal` from the cluster CA; the caller shows its own.
const NODE_GET_PY: &str = "\
import http.client, socket, ssl, sys
addr, path, ca, cert, key = sys.argv[1:]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.load_cert_chain(cert, key)
host, port = addr.rsplit(':', 1)
conn = http.client.HTTPConnection(host, int(port), timeout=10)
conn.sock = ctx.wrap_socket(socket.create_connection((host, int(port)), 10), server_hostname='node.dmpstore.internal')
conn.request('GET', path)
resp = conn.getresponse()
body = resp.read().decode()
if resp.status != 200:
    sys.exit(f'status {resp.status}: {body}')
sys.stdout.write(body)
";

/// SHA-256 (hex) of the leaf certificate the TLS server at `addr` (`host:port`) presents, by
/// an unverified handshake with Python's standard library.
pub fn served_certificate_sha256(addr: &str) -> anyhow::Result<String> {
    python_sha256(
        "import hashlib, ssl, sys\n\
         host, port = sys.argv[1].rsplit(':', 1)\n\
         pem = ssl.get_server_certificate((host, int(port)), timeout=10)\n\
         print(hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest())",
        addr,
    )
}

/// SHA-256 (hex) of the first certificate in a PEM file.
pub fn pem_certificate_sha256(path: &Path) -> anyhow::Result<String> {
    python_sha256(
        "import hashlib, re, ssl, sys\n\
         pem = re.search(r'-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----', open(sys.argv[1]).read(), re.S).group(0)\n\
         print(hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest())",
        &path.to_string_lossy(),
    )
}

fn python_sha256(script: &str, arg: &str) -> anyhow::Result<String> {
    let out = Command::new("python3")
        .args(["-c", script, arg])
        .stdin(Stdio::null())
        .output()
        .context("run python3")?;
    if !out.status.success() {
        bail!("{arg}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The sum of every sample of metric `name` in a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Overwrites the stored bytes of metadata record `partition/key` on a stopped node's RocksDB
/// with bytes no format version decodes (a fault planted on purpose). The key layout is the
/// store's: format byte, partition, NUL, key.
pub fn plant_undecodable_record(data_dir: &Path, partition: &str, key: &str) -> anyhow::Result<()> {
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), data_dir)?;
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), data_dir, &cfs)?;
    let meta = db
        .cf_handle("meta")
        .ok_or_else(|| anyhow::anyhow!("no meta column family in {}", data_dir.display()))?;
    let mut raw_key = vec![1u8];
    raw_key.extend_from_slice(partition.as_bytes());
    raw_key.push(0);
    raw_key.extend_from_slice(key.as_bytes());
    anyhow::ensure!(
        db.get_cf(&meta, &raw_key)?.is_some(),
        "no record {partition}/{key} on this node"
    );
    db.put_cf(&meta, &raw_key, [0xEE, 0xEE])?;
    db.flush_cf(&meta)?;
    Ok(())
}

/// Damages the first data block of every SST file of column family `cf` on a stopped node's
/// RocksDB (a fault planted on purpose): 16 bytes near the start of each file are inverted, so
/// reading that block fails its checksum. Returns the damaged files' names.
pub fn corrupt_sst_blocks(data_dir: &Path, cf: &str) -> anyhow::Result<Vec<String>> {
    let files: Vec<String> = {
        let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), data_dir)?;
        let db = rocksdb::DB::open_cf_for_read_only(
            &rocksdb::Options::default(),
            data_dir,
            &cfs,
            false,
        )?;
        db.live_files()?
            .into_iter()
            .filter(|f| f.column_family_name == cf)
            .map(|f| f.name.trim_start_matches('/').to_string())
            .collect()
    };
    for name in &files {
        let path = data_dir.join(name);
        let mut bytes = std::fs::read(&path)?;
        anyhow::ensure!(bytes.len() > 64, "{name} is too small to hold a data block");
        for b in &mut bytes[32..48] {
            *b = !*b;
        }
        std::fs::write(&path, bytes)?;
    }
    Ok(files)
}
