//! `gateway dev`: the embedded single-machine cluster. One gateway and `n` storage nodes in one
//! process, each node with its own RocksDB under the data directory and its own RPC listener on
//! 127.0.0.1, talking to each other exactly as separate processes do: HTTP over mutual TLS with
//! a CA of its own under `DIR/rpc-tls`.

use crate::config::{Credential, ErasureConfig, GatewayConfig, NodeEntry, TlsConfig};
use anyhow::Context;
use dmpstore_common::limits::{DEFAULT_INLINE_MAX_BYTES, DEFAULT_MAX_CLOCK_OFFSET};
use dmpstore_storage_node::config::NodeConfig;
use dmpstore_storage_node::pki::{ClusterCa, Role};
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct DevOptions {
    pub data_dir: PathBuf,
    pub s3_addr: SocketAddr,
    /// The web console's address; `None`: no console.
    pub console_addr: Option<SocketAddr>,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub n_nodes: u32,
    /// Serve HTTPS with this certificate and key (PEM) instead of plain HTTP.
    pub tls: Option<TlsConfig>,
}

/// Runs the embedded cluster until `shutdown`; the gateway stops first, then the nodes.
pub async fn run(opts: DevOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    if let Some(tls) = &opts.tls {
        // Fail before starting anything; the server loads the pair again for itself.
        dmpstore_storage_node::tls::ReloadingCert::load(&tls.cert_path, &tls.key_path)
            .context("load the S3 endpoint's TLS certificate")?;
    }
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("create {}", opts.data_dir.display()))?;
    let cluster_secret = hex::encode(rand::random::<[u8; 16]>());
    let certs = opts.data_dir.join("rpc-tls");
    let ca = dev_ca(&certs)?;
    let nodes_shutdown = CancellationToken::new();
    let mut nodes = Vec::new();
    let mut entries = Vec::new();
    let mut listeners = Vec::new();
    for id in 1..=opts.n_nodes {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind node listener")?;
        let addr = listener.local_addr()?;
        entries.push(NodeEntry {
            id,
            addr: addr.to_string(),
            zone: format!("zone-{}", (id - 1) % 3 + 1),
            weight: 1,
        });
        listeners.push(listener);
    }
    for (listener, entry) in listeners.into_iter().zip(&entries) {
        let config = NodeConfig {
            node_id: entry.id,
            listen_addr: listener.local_addr()?,
            health_listen_addr: None,
            data_dir: opts.data_dir.join(format!("node-{}", entry.id)),
            cluster_secret: cluster_secret.clone(),
            rpc_tls: Some(ca.issue_into(&certs, &Role::Node(entry.id))?),
            insecure_plaintext_rpc: false,
            zone: entry.zone.clone(),
            parity_chunks: ErasureConfig::default().parity_chunks,
            max_clock_offset_ms: DEFAULT_MAX_CLOCK_OFFSET.as_millis() as u64,
            min_free_bytes: dmpstore_storage_node::config::DEFAULT_MIN_FREE_BYTES,
            failure_detector: Default::default(),
            repair: Default::default(),
            scrub: Default::default(),
            nodes: entries.clone(),
        };
        nodes.push(tokio::spawn(dmpstore_storage_node::server::run(
            listener,
            config,
            nodes_shutdown.clone(),
        )));
    }
    let config = GatewayConfig {
        s3_listen_addr: opts.s3_addr,
        console_listen_addr: opts.console_addr,
        region: opts.region.clone(),
        cluster_secret,
        rpc_tls: Some(ca.issue_into(&certs, &Role::Gateway("dev".into()))?),
        insecure_plaintext_rpc: false,
        inline_max_bytes: DEFAULT_INLINE_MAX_BYTES,
        virtual_host_domains: vec!["localhost".into()],
        erasure: ErasureConfig::default(),
        min_part_size_bytes: dmpstore_common::limits::MIN_PART_SIZE_BYTES,
        replaced_data_grace_secs: dmpstore_common::limits::REPLACED_DATA_GRACE.as_secs(),
        max_clock_offset_ms: DEFAULT_MAX_CLOCK_OFFSET.as_millis() as u64,
        planted_bug_ignore_write_refusals: false,
        tls: opts.tls.clone(),
        limits: Default::default(),
        lifecycle: Default::default(),
        credentials: vec![Credential {
            access_key: opts.access_key.clone(),
            secret_key: opts.secret_key.clone(),
            user: "admin".into(),
        }],
        nodes: entries,
    };
    let listener = TcpListener::bind(opts.s3_addr)
        .await
        .with_context(|| format!("bind {}", opts.s3_addr))?;
    let console =
        match opts.console_addr {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
                format!("bind the console's {addr} (--console-addr off for none)")
            })?),
            None => None,
        };
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    let endpoint = format!("{scheme}://{}", listener.local_addr()?);
    // For `gateway admin ... --config`: the node addresses change with every start.
    let config_path = opts.data_dir.join("gateway.toml");
    std::fs::write(&config_path, toml::to_string(&config)?)
        .with_context(|| format!("write {}", config_path.display()))?;
    println!(
        "dmpstore dev cluster: 1 gateway, {} storage nodes, RS({},{})",
        opts.n_nodes, config.erasure.data_chunks, config.erasure.parity_chunks
    );
    println!("  endpoint:   {endpoint}");
    if let Some(c) = &console {
        println!(
            "  console:    {scheme}://{} (log in with the access key)",
            c.local_addr()?
        );
    }
    println!("  access key: {}", opts.access_key);
    println!("  secret key: {}", opts.secret_key);
    println!("  region:     {}", opts.region);
    println!("  data:       {}", opts.data_dir.display());
    if let Some(tls) = &opts.tls {
        println!("  tls cert:   {}", tls.cert_path.display());
    }
    println!(
        "  config:     {} (for gateway admin)",
        config_path.display()
    );
    println!(
        "try: AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} aws --endpoint-url {endpoint} s3 ls",
        opts.access_key, opts.secret_key
    );
    let served = crate::server::run_with_console(listener, console, config, shutdown).await;
    nodes_shutdown.cancel();
    for node in nodes {
        node.await.context("join storage node")??;
    }
    served
}

/// The dev cluster's CA for the internal RPC's mutual TLS: the one under `dir` from an earlier
/// start, else a new one.
fn dev_ca(dir: &std::path::Path) -> anyhow::Result<ClusterCa> {
    if dir.join("ca.key").exists() {
        return ClusterCa::load(dir);
    }
    let ca = ClusterCa::generate()?;
    ca.save(dir)?;
    Ok(ca)
}
