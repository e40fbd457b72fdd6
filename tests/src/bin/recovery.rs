//! `dmpstore-recovery-bench`: how fast a real multi-process cluster notices a dead node and
//! rebuilds its chunks (DESIGN Figures), and what the rebuild costs readers.
//!
//! Starts `deploy/local-cluster.sh` with 7 nodes, loads objects of mixed sizes (4 KiB to
//! 64 MiB), measures GET p99 with no failure, kills one node with SIGKILL, and measures T_FD,
//! T_FR, T_RT, the rebuild rate, and GET p99 while the rebuild runs, all in the same run.

use anyhow::Context;
use clap::Parser;
use dmpstore_tests::workload::percentile;
use dmpstore_tests::{client_with_timeout, get_bytes, put_bytes, test_data, Cluster};
use futures::StreamExt;
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "dmpstore-recovery-bench",
    about = "Measures failure detection and rebuild"
)]
struct Args {
    /// Data loaded before the failure, in MiB.
    #[arg(long, default_value_t = 2048)]
    total_mib: u64,
    /// Seconds a node stays Down before its chunks are rebuilt.
    #[arg(long, default_value_t = 5)]
    repair_delay: u64,
    /// Rebuild rate limit per node, MiB/s.
    #[arg(long, default_value_t = 64)]
    repair_rate: u64,
    /// Requests in flight while loading and reading.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

const MIB: u64 = 1024 * 1024;
/// Object sizes, cycled: 4 KiB to 64 MiB.
const SIZES: [u64; 8] = [
    4 * 1024,
    64 * 1024,
    256 * 1024,
    MIB,
    4 * MIB,
    16 * MIB,
    64 * MIB,
    512 * 1024,
];
/// Objects read in the latency phases are at most this big (so p99 measures the read path,
/// not the transfer of 64 MiB).
const READ_MAX: u64 = MIB;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

fn status(cluster: &Cluster) -> Value {
    cluster.admin_status().unwrap_or(Value::Null)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cluster = Cluster::start_with(
        7,
        1,
        &[
            "--repair-delay",
            &args.repair_delay.to_string(),
            "--repair-rate",
            &args.repair_rate.to_string(),
        ],
    )?;
    let c = client_with_timeout(&cluster, 0, Duration::from_secs(120));
    c.create_bucket().bucket("bench").send().await?;

    // Load.
    let mut objects: Vec<(String, u64, u64)> = Vec::new();
    let mut total = 0u64;
    let mut i = 0u64;
    while total < args.total_mib * MIB {
        let size = SIZES[i as usize % SIZES.len()];
        objects.push((format!("o{i:06}"), i, size));
        total += size;
        i += 1;
    }
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(objects.clone())
        .map(|(key, seed, size)| {
            let c = c.clone();
            async move {
                put_bytes(&c, "bench", &key, &test_data(seed, size as usize)).await?;
                Ok(())
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    for r in results {
        r?;
    }
    let load_s = started.elapsed().as_secs_f64();
    println!(
        "loaded {} objects, {:.0} MiB, in {load_s:.1} s ({:.1} MiB/s)",
        objects.len(),
        total as f64 / MIB as f64,
        total as f64 / MIB as f64 / load_s
    );
    let readable: Vec<(String, u64, u64)> = objects
        .iter()
        .filter(|o| o.2 <= READ_MAX)
        .cloned()
        .collect();

    // GET latency with no failure.
    let baseline = read_for(
        &c,
        &readable,
        args.concurrency,
        Duration::from_secs(15),
        || false,
    )
    .await?;
    let base_p99 = percentile(&baseline, 99.0).context("no reads")?;
    println!(
        "GET (objects <= 1 MiB) with no failure: {} reads, p50 {:.1} ms, p99 {:.1} ms",
        baseline.len(),
        percentile(&baseline, 50.0).unwrap_or(0.0),
        base_p99
    );

    // Failure.
    let victim = 3usize;
    let killed = Instant::now();
    cluster.kill_node(victim)?;
    let mut seen_down = None;
    while seen_down.is_none() {
        let s = status(&cluster);
        if s["nodes"][victim]["state"] == "Down" {
            seen_down = Some(killed.elapsed());
        } else if killed.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("node not declared down within 60 s");
        }
    }
    // GETs while detection, the repair delay and the rebuild run, until repair is done.
    let done = || {
        let s = status(&cluster);
        s["repair_idle"] == true
            && s["last_t_fr_ms"].is_u64()
            && s["dead_agreed"]
                .as_array()
                .is_some_and(|d| d.iter().any(|v| v.as_u64() == Some(victim as u64 + 1)))
    };
    let during = read_for(
        &c,
        &readable,
        args.concurrency,
        Duration::from_secs(1800),
        done,
    )
    .await?;
    let healed = status(&cluster);
    let t_fd = healed["last_t_fd_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
    let t_fr = healed["last_t_fr_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
    let t_rt = healed["last_t_rt_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
    let rebuilt = healed["rebuilt_bytes"].as_u64().unwrap_or(0) as f64 / MIB as f64;
    let during_p99 = percentile(&during, 99.0).unwrap_or(0.0);
    println!(
        "kill -9 of n{}: in the admin view Down after {:.2} s",
        victim + 1,
        seen_down.unwrap_or_default().as_secs_f64()
    );
    println!(
        "  T_FD {t_fd:.2} s, repair delay {} s, T_FR {t_fr:.2} s, T_RT {t_rt:.2} s",
        args.repair_delay
    );
    println!(
        "  rebuilt {rebuilt:.1} MiB, rebuild rate {:.1} MiB/s over T_FR (limit {} MiB/s per node)",
        if t_fr > 0.0 { rebuilt / t_fr } else { 0.0 },
        args.repair_rate
    );
    println!(
        "  GET p99 during detection + delay + rebuild: {during_p99:.1} ms over {} reads ({:.2}x the p99 with no failure)",
        during.len(),
        during_p99 / base_p99
    );
    println!("{}", cluster.admin(&["status"]).unwrap_or_default());
    Ok(())
}

/// Reads random objects of `objects` with `concurrency` in flight until `stop` says so or
/// `limit` passes; returns the latencies in ms. Every read is checked byte for byte.
async fn read_for(
    c: &aws_sdk_s3::Client,
    objects: &[(String, u64, u64)],
    concurrency: usize,
    limit: Duration,
    mut stop: impl FnMut() -> bool,
) -> anyhow::Result<Vec<f64>> {
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut round = 0usize;
    while started.elapsed() < limit {
        let batch: Vec<(String, u64, u64)> = (0..concurrency * 8)
            .map(|j| objects[(round * 7919 + j * 104_729) % objects.len()].clone())
            .collect();
        round += 1;
        let results: Vec<anyhow::Result<f64>> = futures::stream::iter(batch)
            .map(|(key, seed, size)| {
                let c = c.clone();
                async move {
                    let t = Instant::now();
                    let got = get_bytes(&c, "bench", &key).await?;
                    anyhow::ensure!(got == test_data(seed, size as usize), "{key}: wrong bytes");
                    Ok(t.elapsed().as_secs_f64() * 1000.0)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for r in results {
            latencies.push(r?);
        }
        if stop() {
            break;
        }
    }
    Ok(latencies)
}
