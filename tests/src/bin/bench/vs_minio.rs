//! `dmpstore-bench --vs-minio`: dmpstore's embedded cluster (`gateway dev`, 6 nodes, RS(4,2))
//! and MinIO (one process, 6 folders as drives, EC:2) side by side in one run, driven by the same
//! `aws-sdk-s3` client with the same settings, plus this machine's limit for large PUTs: the
//! disk's direct sequential write rate over the erasure overhead `(k + m) / k` (issue 11).
//!
//! MinIO is a benchmark peer only: `$DMPSTORE_MINIO`, else `minio` in `$(go env GOPATH)/bin`,
//! else `go install github.com/minio/minio@latest` (several minutes, once).

use anyhow::{bail, Context};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use dmpstore_tests::{client, test_data};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MIB: f64 = 1024.0 * 1024.0;
const KEY: &str = "bench";
const SECRET: &str = "bench-secret-123";

/// One row of the table.
struct Workload {
    name: String,
    kind: Kind,
    size_bytes: usize,
    in_flight: usize,
    count: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Put,
    Get,
    /// `count` ranged GETs of `size_bytes` over one object of `RANGED_OBJECT_MIB`.
    RangedGet,
}

const RANGED_OBJECT_MIB: usize = 1024;

fn workloads(small_ops: usize, scale: usize) -> Vec<Workload> {
    let w = |name: &str, kind, size_bytes, in_flight, count| Workload {
        name: name.to_string(),
        kind,
        size_bytes,
        in_flight,
        count,
    };
    let mib = 1024 * 1024;
    vec![
        w("PUT 4 KiB, 16 in flight", Kind::Put, 4096, 16, small_ops),
        w("GET 4 KiB, 16 in flight", Kind::Get, 4096, 16, small_ops),
        w("PUT 1 MiB, 8 in flight", Kind::Put, mib, 8, 64 * scale),
        w("GET 1 MiB, 8 in flight", Kind::Get, mib, 8, 64 * scale),
        w("PUT 64 MiB, 4 in flight", Kind::Put, 64 * mib, 4, 4 * scale),
        w("GET 64 MiB, 4 in flight", Kind::Get, 64 * mib, 4, 4 * scale),
        w("PUT 256 MiB, 4 in flight", Kind::Put, 256 * mib, 4, 4),
        w("GET 256 MiB, 4 in flight", Kind::Get, 256 * mib, 4, 4),
        w(
            "ranged GET 8 MiB of 1 GiB, 8 in flight",
            Kind::RangedGet,
            8 * mib,
            8,
            RANGED_OBJECT_MIB / 8 * scale,
        ),
    ]
}

/// A running server under test.
struct Peer {
    name: &'static str,
    child: Child,
    client: aws_sdk_s3::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// What `--vs-minio` runs.
pub struct Options {
    pub small_ops: usize,
    pub scale: usize,
    /// Only the workloads whose name contains this.
    pub only: Option<String>,
    /// Only this peer (`dmpstore` or `minio`).
    pub peer: Option<String>,
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let wanted = |name: &str| opts.peer.as_deref().is_none_or(|p| p == name);
    if !wanted("dmpstore") && !wanted("minio") {
        bail!("--peer is dmpstore or minio");
    }
    let limit_dir = tempfile::tempdir()?;
    let disk_mib_s = direct_write_mib_s(limit_dir.path())?;
    let overhead = 6.0 / 4.0;
    println!("disk: direct sequential write (dd oflag=direct, 1 GiB): {disk_mib_s:.1} MiB/s");
    println!(
        "large PUT limit of this machine: {:.1} MiB/s (disk / (k + m) / k = disk / {overhead})",
        disk_mib_s / overhead
    );
    let mut peers = Vec::new();
    if wanted("dmpstore") {
        peers.push(start_dmpstore()?);
    }
    if wanted("minio") {
        peers.push(start_minio(&minio_binary()?)?);
    }
    for p in &peers {
        println!("{}: pid {}", p.name, p.child.id());
        p.client.create_bucket().bucket("bench").send().await?;
    }
    println!();
    println!("| workload | MinIO | dmpstore | dmpstore / MinIO |");
    println!("|---|---|---|---|");
    let mut large_put = 0.0f64;
    let chosen = workloads(opts.small_ops, opts.scale)
        .into_iter()
        .filter(|w| opts.only.as_deref().is_none_or(|o| w.name.contains(o)));
    for (row, w) in chosen.enumerate() {
        // Each peer on a fresh key space; who goes first alternates by row, so neither
        // always meets the page cache and the disk as the other left them.
        let mut order: Vec<&Peer> = peers.iter().collect();
        if row % 2 == 1 {
            order.reverse();
        }
        let (mut dm, mut mn) = (f64::NAN, f64::NAN);
        for p in order {
            let figure = measure(&p.client, &w, p.name).await?;
            match p.name {
                "dmpstore" => dm = figure,
                _ => mn = figure,
            }
        }
        let unit = if w.size_bytes <= 4096 {
            "ops/s"
        } else {
            "MiB/s"
        };
        println!(
            "| {} | {mn:.0} {unit} | {dm:.0} {unit} | {:.2}x |",
            w.name,
            dm / mn
        );
        if w.kind == Kind::Put && w.size_bytes >= 64 << 20 {
            large_put = large_put.max(dm);
        }
    }
    println!();
    println!(
        "dmpstore's best large PUT: {large_put:.1} MiB/s = {:.0} % of the machine's limit ({:.1} MiB/s)",
        100.0 * large_put / (disk_mib_s / overhead),
        disk_mib_s / overhead
    );
    Ok(())
}

/// The workload's rate on one peer: ops/s for 4 KiB objects, MiB/s otherwise.
async fn measure(c: &aws_sdk_s3::Client, w: &Workload, peer: &str) -> anyhow::Result<f64> {
    let body = Bytes::from(test_data(w.size_bytes as u64, w.size_bytes));
    let prefix = format!("{}-{}", w.size_bytes, w.in_flight);
    if w.kind == Kind::RangedGet {
        put(
            c,
            "ranged",
            Bytes::from(test_data(9, RANGED_OBJECT_MIB << 20)),
        )
        .await?;
    }
    let start = Instant::now();
    run_concurrently(w.count, w.in_flight, |i| {
        let (c, body, prefix) = (c.clone(), body.clone(), prefix.clone());
        let size = w.size_bytes;
        async move {
            match w.kind {
                Kind::Put => put(&c, &format!("{prefix}/{i}"), body).await,
                Kind::Get => get_len(&c, &format!("{prefix}/{i}"), None, size).await,
                Kind::RangedGet => {
                    // Over the object, again from its start with --scale above 1.
                    let from = (i % ((RANGED_OBJECT_MIB << 20) / size)) * size;
                    let range = format!("bytes={from}-{}", from + size - 1);
                    get_len(&c, "ranged", Some(range), size).await
                }
            }
        }
    })
    .await
    .with_context(|| format!("{peer}: {}", w.name))?;
    let secs = start.elapsed().as_secs_f64();
    Ok(if w.size_bytes <= 4096 {
        w.count as f64 / secs
    } else {
        (w.count * w.size_bytes) as f64 / MIB / secs
    })
}

async fn put(c: &aws_sdk_s3::Client, key: &str, body: Bytes) -> anyhow::Result<()> {
    c.put_object()
        .bucket("bench")
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await?;
    Ok(())
}

async fn get_len(
    c: &aws_sdk_s3::Client,
    key: &str,
    range: Option<String>,
    expected: usize,
) -> anyhow::Result<()> {
    let out = c
        .get_object()
        .bucket("bench")
        .key(key)
        .set_range(range)
        .send()
        .await?;
    let mut body = out.body;
    let mut n = 0;
    while let Some(chunk) = body.try_next().await? {
        n += chunk.len();
    }
    if n != expected {
        bail!("{key}: read {n} bytes, expected {expected}");
    }
    Ok(())
}

/// Runs `op(0..n)` with at most `in_flight` at once.
async fn run_concurrently<F, Fut>(n: usize, in_flight: usize, op: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use futures::StreamExt;
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..n)
        .map(&op)
        .buffer_unordered(in_flight)
        .collect()
        .await;
    results.into_iter().collect()
}

/// 1 GiB written with `dd oflag=direct conv=fsync`: the disk's own sequential write rate.
fn direct_write_mib_s(dir: &Path) -> anyhow::Result<f64> {
    let file = dir.join("dd.bin");
    let start = Instant::now();
    let status = Command::new("dd")
        .args([
            "if=/dev/zero",
            "bs=4M",
            "count=256",
            "oflag=direct",
            "conv=fsync",
        ])
        .arg(format!("of={}", file.display()))
        .stderr(Stdio::null())
        .status()
        .context("run dd")?;
    if !status.success() {
        bail!("dd failed");
    }
    let rate = 1024.0 / start.elapsed().as_secs_f64();
    std::fs::remove_file(&file)?;
    Ok(rate)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_dmpstore() -> anyhow::Result<Peer> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let child =
        super::spawn_gateway_dev(dir.path(), port, (KEY, SECRET), &["--console-addr", "off"])?;
    Ok(Peer {
        name: "dmpstore",
        child,
        client: client(
            &format!("http://127.0.0.1:{port}"),
            KEY,
            SECRET,
            "us-east-1",
        ),
        _dir: dir,
    })
}

fn start_minio(bin: &Path) -> anyhow::Result<Peer> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let drives: Vec<PathBuf> = (1..=6).map(|i| dir.path().join(format!("d{i}"))).collect();
    for d in &drives {
        std::fs::create_dir_all(d)?;
    }
    let child = Command::new(bin)
        .args([
            "server",
            "--quiet",
            "--address",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--console-address", &format!("127.0.0.1:{}", free_port()?)])
        .args(&drives)
        .env("MINIO_ROOT_USER", KEY)
        .env("MINIO_ROOT_PASSWORD", SECRET)
        .env("MINIO_CI_CD", "1")
        .env("MINIO_STORAGE_CLASS_STANDARD", "EC:2")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let live = format!("{endpoint}/minio/health/live");
    let start = Instant::now();
    while dmpstore_tests::http_get_text(&live).is_err() {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("MinIO did not come up on {endpoint}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(Peer {
        name: "MinIO",
        child,
        client: client(&endpoint, KEY, SECRET, "us-east-1"),
        _dir: dir,
    })
}

/// MinIO's binary: `$DMPSTORE_MINIO`, or the one `go install` put in `$(go env GOPATH)/bin`,
/// installed there first if missing.
fn minio_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("DMPSTORE_MINIO") {
        return Ok(PathBuf::from(p));
    }
    let gopath = Command::new("go")
        .args(["env", "GOPATH"])
        .output()
        .context("run go env GOPATH (Go is needed to install MinIO)")?;
    let bin = PathBuf::from(String::from_utf8_lossy(&gopath.stdout).trim()).join("bin/minio");
    if !bin.exists() {
        println!(
            "installing MinIO: go install github.com/minio/minio@latest (several minutes, once)"
        );
        let status = Command::new("go")
            .args(["install", "github.com/minio/minio@latest"])
            .status()
            .context("go install minio")?;
        if !status.success() {
            bail!("go install github.com/minio/minio@latest failed");
        }
    }
    let version = Command::new(&bin).arg("--version").output()?;
    println!(
        "MinIO: {} ({})",
        bin.display(),
        String::from_utf8_lossy(&version.stdout)
            .lines()
            .next()
            .unwrap_or("?")
    );
    Ok(bin)
}
