//! `dmpstore-bench`: throughput, latency and memory of a real dmpstore cluster driven by
//! `aws-sdk-s3`, each figure printed beside a bare baseline measured in the same run.
//!
//! Phases: (1) the codec's encode speed; (2) raw RocksDB with synced writes, the same bytes as the
//! cluster phases; (3) the embedded 6-node cluster (`gateway dev`): PUT/GET MiB/s of large
//! objects and ops/s with p50/p99 of 4 KiB objects, at a fixed concurrency; (4) the gateway's
//! peak RSS during a 1 GiB PUT and a 1 GiB GET on the multi-process cluster, where the gateway
//! is a process of its own. `--vs-minio` instead runs dmpstore and MinIO side by side
//! (`bench/vs_minio.rs`); `--access-cost` the cost of authorization and TLS.

use anyhow::{bail, Context};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use clap::Parser;
use dmpstore_common::codec::Codec;
use dmpstore_common::stripe::StripeLayout;
use dmpstore_tests::{bin_dir, client, test_data, Cluster};
use futures::StreamExt;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "dmpstore-bench",
    about = "Benchmarks a dmpstore cluster against bare baselines"
)]
struct Args {
    /// Number of large objects written and read.
    #[arg(long, default_value_t = 32)]
    large_objects: usize,
    /// Size of each large object in MiB.
    #[arg(long, default_value_t = 64)]
    large_mib: usize,
    /// Number of 4 KiB objects written and read.
    #[arg(long, default_value_t = 5000)]
    small_ops: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Size of the object for the gateway memory measurement, in MiB.
    #[arg(long, default_value_t = 1024)]
    rss_mib: usize,
    /// Skip the memory measurement.
    #[arg(long)]
    skip_rss: bool,
    /// Objects of 1 KiB in a bucket listed whole with ListObjectsV2 (0: no listing phase;
    /// the figure is for 100000).
    #[arg(long, default_value_t = 0)]
    list_keys: usize,
    /// Only measure the cost of authorization and TLS (multi-process cluster, one HTTPS and
    /// one HTTP gateway): 4 KiB GETs and `--large-mib` PUT/GET, side by side.
    #[arg(long)]
    access_cost: bool,
    /// Only compare with MinIO (one process, 6 folders as drives, EC:2) in the same run:
    /// 4 KiB (`--small-ops` of them), 1, 64 and 256 MiB PUTs and GETs and 8 MiB ranged GETs of a
    /// 1 GiB object, beside the machine's limit for large PUTs (issue 11).
    #[arg(long)]
    vs_minio: bool,
    /// With --vs-minio: multiplies the number of 1 and 64 MiB objects (64 and 4 at 1) and of
    /// ranged GETs (128 at 1).
    #[arg(long, default_value_t = 1)]
    scale: usize,
    /// With --vs-minio: only the workloads whose name contains this (e.g. "PUT 64").
    #[arg(long)]
    only: Option<String>,
    /// With --vs-minio: measure only this peer (`dmpstore` or `minio`), e.g. to profile it;
    /// ratios are then not printed.
    #[arg(long)]
    peer: Option<String>,
}

#[path = "bench/vs_minio.rs"]
mod vs_minio;

const MIB: f64 = 1024.0 * 1024.0;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "dmpstore-bench: {} x {} MiB large objects, {} x 4 KiB small objects, concurrency {}",
        args.large_objects, args.large_mib, args.small_ops, args.concurrency
    );

    if args.access_cost {
        return rt.block_on(access_cost(&args));
    }
    if args.vs_minio {
        return rt.block_on(vs_minio::run(vs_minio::Options {
            small_ops: args.small_ops,
            scale: args.scale,
            only: args.only.clone(),
            peer: args.peer.clone(),
        }));
    }
    let encode = codec_encode_mib_s();
    println!("baseline codec RS(4,2) encode, 1 core:        {encode:>9.1} MiB/s");
    let raw = raw_rocksdb(&args)?;
    let (raw_large, raw_read, raw_small) =
        (raw.large_write_mib_s, raw.large_read_mib_s, raw.small_write);
    println!("baseline raw RocksDB synced 256 KiB writes:    {raw_large:>9.1} MiB/s");
    println!("baseline raw RocksDB 256 KiB reads:            {raw_read:>9.1} MiB/s");
    println!(
        "baseline raw RocksDB synced 4 KiB writes:      {:>9.0} ops/s",
        raw_small.ops_s
    );

    let cluster = rt.block_on(embedded_cluster(&args))?;
    println!();
    println!(
        "embedded cluster (1 gateway + 6 nodes, RS(4,2)), concurrency {}:",
        args.concurrency
    );
    println!(
        "  PUT {} MiB objects: {:>9.1} MiB/s   ({:.2}x raw RocksDB)",
        args.large_mib,
        cluster.put_mib_s,
        cluster.put_mib_s / raw_large
    );
    println!(
        "  GET {} MiB objects: {:>9.1} MiB/s   ({:.2}x raw RocksDB reads)",
        args.large_mib,
        cluster.get_mib_s,
        cluster.get_mib_s / raw_read
    );
    for (name, s) in [("PUT", &cluster.small_put), ("GET", &cluster.small_get)] {
        println!(
            "  {name} 4 KiB: {:>9.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
            s.ops_s, s.p50_ms, s.p99_ms
        );
    }
    println!(
        "  4 KiB PUT ops/s vs raw RocksDB synced 4 KiB writes: {:.2}x",
        cluster.small_put.ops_s / raw_small.ops_s
    );
    if let Some(list) = cluster.list_keys_s {
        let raw_scan = raw_rocksdb_scan(args.list_keys)?;
        println!(
            "  LIST {} keys (ListObjectsV2, pages of 1000): {:>9.0} keys/s   (raw RocksDB iteration: {:.0} keys/s, {:.3}x)",
            args.list_keys,
            list,
            raw_scan,
            list / raw_scan
        );
    }

    if !args.skip_rss {
        let (put_rss, get_rss) = rt.block_on(gateway_rss(args.rss_mib))?;
        println!();
        println!("gateway peak RSS (multi-process cluster, gateway process only):");
        println!("  during a {} MiB PUT: {:>7.1} MiB", args.rss_mib, put_rss);
        println!(
            "  during a {} MiB GET: {:>7.1} MiB   (limit 300 MiB: {})",
            args.rss_mib,
            get_rss,
            if put_rss.max(get_rss) < 300.0 {
                "ok"
            } else {
                "EXCEEDED"
            }
        );
    }
    Ok(())
}

fn codec_encode_mib_s() -> f64 {
    let layout = StripeLayout {
        k: 4,
        m: 2,
        chunk_size_bytes: 256 * 1024,
    };
    let codec = Codec::new(layout).expect("valid profile");
    let stripe = Bytes::from(test_data(1, layout.stripe_size_bytes() as usize));
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(2) {
        std::hint::black_box(codec.encode_stripe(&stripe).expect("encode"));
        n += 1;
    }
    n as f64 * layout.stripe_size_bytes() as f64 / MIB / start.elapsed().as_secs_f64()
}

#[derive(Debug, Clone, Copy)]
struct OpStats {
    ops_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn stats(mut latencies: Vec<Duration>, wall: Duration) -> OpStats {
    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    OpStats {
        ops_s: latencies.len() as f64 / wall.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

/// The same bytes written straight into one RocksDB with synced WAL writes, from as many
/// threads as the cluster phases have requests in flight.
struct RawFigures {
    large_write_mib_s: f64,
    large_read_mib_s: f64,
    small_write: OpStats,
}

fn raw_rocksdb(args: &Args) -> anyhow::Result<RawFigures> {
    let dir = tempfile::tempdir()?;
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.set_enable_blob_files(true);
    opts.set_min_blob_size(4096);
    let db = Arc::new(rocksdb::DB::open(&opts, dir.path())?);
    let value = Arc::new(test_data(3, 256 * 1024));
    let total_values = args.large_objects * args.large_mib * 4;
    let per_thread = total_values.div_ceil(args.concurrency);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..args.concurrency {
            let (db, value) = (db.clone(), value.clone());
            s.spawn(move || {
                let mut w = rocksdb::WriteOptions::default();
                w.set_sync(true);
                for i in 0..per_thread {
                    db.put_opt(format!("large/{t}/{i}"), &value[..], &w)
                        .expect("put");
                }
            });
        }
    });
    let large = (per_thread * args.concurrency) as f64 * 0.25 / start.elapsed().as_secs_f64();

    // The same values read back, from as many threads.
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..args.concurrency {
            let db = db.clone();
            s.spawn(move || {
                for i in 0..per_thread {
                    let v = db
                        .get(format!("large/{t}/{i}"))
                        .expect("get")
                        .expect("present");
                    std::hint::black_box(v);
                }
            });
        }
    });
    let large_read = (per_thread * args.concurrency) as f64 * 0.25 / start.elapsed().as_secs_f64();

    let small = Arc::new(test_data(4, 4096));
    let per_thread = args.small_ops.div_ceil(args.concurrency);
    let start = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.concurrency)
            .map(|t| {
                let (db, small) = (db.clone(), small.clone());
                s.spawn(move || {
                    let mut w = rocksdb::WriteOptions::default();
                    w.set_sync(true);
                    (0..per_thread)
                        .map(|i| {
                            let t0 = Instant::now();
                            db.put_opt(format!("small/{t}/{i}"), &small[..], &w)
                                .expect("put");
                            t0.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    Ok(RawFigures {
        large_write_mib_s: large,
        large_read_mib_s: large_read,
        small_write: stats(latencies, start.elapsed()),
    })
}

struct ClusterFigures {
    put_mib_s: f64,
    get_mib_s: f64,
    small_put: OpStats,
    small_get: OpStats,
    /// Keys per second of a full ListObjectsV2 pass (pages of 1000), if measured.
    list_keys_s: Option<f64>,
}

/// Runs `gateway dev` in a temporary directory and measures it.
async fn embedded_cluster(args: &Args) -> anyhow::Result<ClusterFigures> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = spawn_gateway_dev(dir.path(), port, ("bench", "bench-secret"), &[])?;
    let c = client(
        &format!("http://127.0.0.1:{port}"),
        "bench",
        "bench-secret",
        "us-east-1",
    );
    c.create_bucket().bucket("bench").send().await?;

    let large = Bytes::from(test_data(5, args.large_mib * 1024 * 1024));
    let total_mib = (args.large_objects * args.large_mib) as f64;
    let start = Instant::now();
    run_concurrently(args.large_objects, args.concurrency, |i| {
        let (c, large) = (c.clone(), large.clone());
        async move {
            c.put_object()
                .bucket("bench")
                .key(format!("large/{i}"))
                .body(ByteStream::from(large))
                .send()
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
        }
    })
    .await?;
    let put_mib_s = total_mib / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let expected_len = large.len();
    run_concurrently(args.large_objects, args.concurrency, |i| {
        let c = c.clone();
        async move {
            let out = c
                .get_object()
                .bucket("bench")
                .key(format!("large/{i}"))
                .send()
                .await?;
            let mut body = out.body;
            let mut n = 0;
            while let Some(chunk) = body.try_next().await? {
                n += chunk.len();
            }
            if n != expected_len {
                bail!("large/{i}: read {n} bytes, expected {expected_len}");
            }
            Ok(())
        }
    })
    .await?;
    let get_mib_s = total_mib / start.elapsed().as_secs_f64();

    let small = Bytes::from(test_data(6, 4096));
    let start = Instant::now();
    let put_lat = run_concurrently(args.small_ops, args.concurrency, |i| {
        let (c, small) = (c.clone(), small.clone());
        async move {
            c.put_object()
                .bucket("bench")
                .key(format!("small/{i}"))
                .body(ByteStream::from(small))
                .send()
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
        }
    })
    .await?;
    let small_put = stats(put_lat, start.elapsed());
    let start = Instant::now();
    let get_lat = run_concurrently(args.small_ops, args.concurrency, |i| {
        let c = c.clone();
        async move {
            let out = c
                .get_object()
                .bucket("bench")
                .key(format!("small/{i}"))
                .send()
                .await?;
            let body = out.body.collect().await?.into_bytes();
            if body.len() != 4096 {
                bail!("small/{i}: wrong length");
            }
            Ok(())
        }
    })
    .await?;
    let small_get = stats(get_lat, start.elapsed());
    let list_keys_s = match args.list_keys {
        0 => None,
        n => Some(list_pass(&c, n, args.concurrency).await?),
    };

    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    child.wait()?;
    Ok(ClusterFigures {
        put_mib_s,
        get_mib_s,
        small_put,
        small_get,
        list_keys_s,
    })
}

/// Starts `gateway dev` on `dir` with S3 on `127.0.0.1:port` and the given key, once its
/// endpoint is up (its output is drained in the background).
fn spawn_gateway_dev(
    dir: &std::path::Path,
    port: u16,
    (key, secret): (&str, &str),
    extra: &[&str],
) -> anyhow::Result<std::process::Child> {
    let mut child = Command::new(bin_dir().join("gateway"))
        .args(["dev", "--data-dir"])
        .arg(dir)
        .args(["--s3-addr", &format!("127.0.0.1:{port}")])
        .args(["--access-key", key, "--secret-key", secret])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("spawn gateway dev")?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    if !lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("endpoint:"))
    {
        bail!("gateway dev did not start");
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(child)
}

/// One way of reaching the cluster in the access-cost comparison.
struct Route {
    name: &'static str,
    client: aws_sdk_s3::Client,
    bucket: &'static str,
}

/// The cost of authorization and TLS, in one run on two multi-process clusters: the baseline
/// is an administrator over plain HTTP on a bucket without a policy (authorization allows it
/// without reading the bucket) on a cluster whose internal RPC is plain HTTP too; then the
/// same on the cluster with the internal RPC over mutual TLS (as every cluster runs by
/// default), where gateway 0 serves HTTPS and gateway 1 HTTP, and a user granted access by a
/// bucket policy (the bucket record read and the policy evaluated on every request), over
/// HTTP and over HTTPS.
async fn access_cost(args: &Args) -> anyhow::Result<()> {
    let plain = Cluster::start_with(6, 1, &["--plaintext-rpc"])?;
    let cluster = Cluster::start_with(6, 2, &["--tls-gateways", "1"])?;
    let key: serde_json::Value =
        serde_json::from_str(&cluster.admin(&["user", "create", "--name", "reader", "--json"])?)?;
    let (ak, sk) = (
        key["access_key"].as_str().unwrap_or(""),
        key["secret_key"].as_str().unwrap_or(""),
    );
    plain
        .client(0)
        .create_bucket()
        .bucket("open")
        .send()
        .await?;
    let admin = cluster.client(1);
    admin.create_bucket().bucket("open").send().await?;
    admin.create_bucket().bucket("governed").send().await?;
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/reader"},
         "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::governed/*",
         "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": "arn:aws:s3:::governed"}]});
    admin
        .put_bucket_policy()
        .bucket("governed")
        .policy(policy.to_string())
        .send()
        .await?;
    let routes = [
        Route {
            name: "HTTP, admin, no policy, plain RPC",
            client: plain.client(0),
            bucket: "open",
        },
        Route {
            name: "HTTP, admin, no policy, mTLS RPC",
            client: cluster.client(1),
            bucket: "open",
        },
        Route {
            name: "HTTP, user by policy, mTLS RPC",
            client: cluster.client_as(1, ak, sk),
            bucket: "governed",
        },
        Route {
            name: "HTTPS, user by policy, mTLS RPC",
            client: cluster.client_as(0, ak, sk),
            bucket: "governed",
        },
    ];
    let small = Bytes::from(test_data(6, 4096));
    for (writer, bucket) in [
        (plain.client(0), "open"),
        (admin.clone(), "open"),
        (admin.clone(), "governed"),
    ] {
        run_concurrently(args.small_ops, args.concurrency, |i| {
            let (c, small) = (writer.clone(), small.clone());
            async move {
                c.put_object()
                    .bucket(bucket)
                    .key(format!("small/{i}"))
                    .body(ByteStream::from(small))
                    .send()
                    .await?;
                Ok(())
            }
        })
        .await?;
    }
    // Two rounds, the second in reverse order, so that what grows with time (data on disk,
    // compaction) weighs on every route alike; each route writes keys of its own.
    let mut sums = vec![(0.0, 0.0, 0.0); routes.len()];
    for round in 0..2 {
        let order: Vec<usize> = match round {
            0 => (0..routes.len()).collect(),
            _ => (0..routes.len()).rev().collect(),
        };
        for i in order {
            let (get, put_mib, get_mib) = route_figures(&routes[i], i, args).await?;
            sums[i].0 += get.ops_s / 2.0;
            sums[i].1 += put_mib / 2.0;
            sums[i].2 += get_mib / 2.0;
        }
    }
    println!("cost of authorization and TLS (multi-process clusters, 6 nodes, RS(4,2), mean of 2 rounds):");
    let base = sums[0];
    for (route, s) in routes.iter().zip(&sums) {
        println!(
            "  {:<34} 4 KiB GET {:>7.0} ops/s ({:.2}x)  {} MiB PUT {:>6.1} MiB/s ({:.2}x)  GET {:>6.1} MiB/s ({:.2}x)",
            route.name, s.0, s.0 / base.0, args.large_mib, s.1, s.1 / base.1, s.2, s.2 / base.2
        );
    }
    Ok(())
}

/// 4 KiB GETs at `--concurrency`, then `--large-objects` PUTs and GETs of `--large-mib`
/// with 4 in flight, through one route.
async fn route_figures(
    route: &Route,
    idx: usize,
    args: &Args,
) -> anyhow::Result<(OpStats, f64, f64)> {
    let (c, bucket) = (&route.client, route.bucket);
    let start = Instant::now();
    let lat = run_concurrently(args.small_ops, args.concurrency, |i| async move {
        let out = c
            .get_object()
            .bucket(bucket)
            .key(format!("small/{i}"))
            .send()
            .await?;
        if out.body.collect().await?.into_bytes().len() != 4096 {
            bail!("small/{i}: wrong length");
        }
        Ok(())
    })
    .await?;
    let small_get = stats(lat, start.elapsed());
    let large = Bytes::from(test_data(5, args.large_mib * 1024 * 1024));
    let total_mib = (args.large_objects * args.large_mib) as f64;
    let start = Instant::now();
    run_concurrently(args.large_objects, 4, |i| {
        let large = large.clone();
        async move {
            c.put_object()
                .bucket(bucket)
                .key(format!("large/{idx}/{i}"))
                .body(ByteStream::from(large))
                .send()
                .await?;
            Ok(())
        }
    })
    .await?;
    let put_mib_s = total_mib / start.elapsed().as_secs_f64();
    let start = Instant::now();
    run_concurrently(args.large_objects, 4, |i| async move {
        let out = c
            .get_object()
            .bucket(bucket)
            .key(format!("large/{idx}/{i}"))
            .send()
            .await?;
        let mut body = out.body;
        let mut n = 0;
        while let Some(chunk) = body.try_next().await? {
            n += chunk.len();
        }
        if n != args.large_mib * 1024 * 1024 {
            bail!("large/{i}: read {n} bytes");
        }
        Ok(())
    })
    .await?;
    Ok((
        small_get,
        put_mib_s,
        total_mib / start.elapsed().as_secs_f64(),
    ))
}

/// Writes `n` objects of 1 KiB into a bucket of their own, then lists it whole; keys per
/// second of the listing.
async fn list_pass(c: &aws_sdk_s3::Client, n: usize, concurrency: usize) -> anyhow::Result<f64> {
    c.create_bucket().bucket("bench-list").send().await?;
    let body = Bytes::from(test_data(7, 1024));
    run_concurrently(n, concurrency, |i| {
        let (c, body) = (c.clone(), body.clone());
        async move {
            c.put_object()
                .bucket("bench-list")
                .key(format!(
                    "events/dt=2026-11-{:02}/part-{i:06}.json",
                    i % 30 + 1
                ))
                .body(ByteStream::from(body))
                .send()
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
        }
    })
    .await?;
    let start = Instant::now();
    let (mut listed, mut token) = (0usize, None::<String>);
    loop {
        let page = c
            .list_objects_v2()
            .bucket("bench-list")
            .set_continuation_token(token.clone())
            .send()
            .await?;
        listed += page.contents().len();
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    if listed != n {
        bail!("listed {listed} of {n} keys");
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Keys per second of iterating `n` keys with 1 KiB values in raw RocksDB (the listing's
/// baseline).
fn raw_rocksdb_scan(n: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    let db = rocksdb::DB::open(&opts, dir.path())?;
    let value = test_data(8, 1024);
    for i in 0..n {
        db.put(
            format!("events/dt=2026-11-{:02}/part-{i:06}.json", i % 30 + 1),
            &value,
        )?;
    }
    db.flush()?;
    let start = Instant::now();
    let mut seen = 0usize;
    for item in db.iterator(rocksdb::IteratorMode::Start) {
        let (k, v) = item?;
        std::hint::black_box((k, v));
        seen += 1;
    }
    if seen != n {
        bail!("raw scan saw {seen} of {n} keys");
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Runs `n` operations with `concurrency` in flight; returns each one's latency.
async fn run_concurrently<F, Fut>(
    n: usize,
    concurrency: usize,
    op: F,
) -> anyhow::Result<Vec<Duration>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let results: Vec<anyhow::Result<Duration>> = futures::stream::iter(0..n)
        .map(|i| {
            let fut = op(i);
            async move {
                let t0 = Instant::now();
                fut.await?;
                Ok(t0.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?;
    Ok(kib / 1024.0)
}

/// Peak RSS of a lone gateway process after a large streamed PUT, then after a large GET.
async fn gateway_rss(size_mib: usize) -> anyhow::Result<(f64, f64)> {
    let cluster = Cluster::start(6, 1)?;
    let gateway_pid = cluster
        .info
        .processes
        .iter()
        .find(|p| p.role == "gateway")
        .context("gateway")?
        .pid;
    let c = cluster.client(0);
    c.create_bucket().bucket("rss").send().await?;
    let file = cluster.dir.path().join("big.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
        let block = test_data(9, 1024 * 1024);
        for _ in 0..size_mib {
            f.write_all(&block)?;
        }
    }
    let body = ByteStream::from_path(&file).await?;
    c.put_object()
        .bucket("rss")
        .key("big")
        .body(body)
        .send()
        .await?;
    std::fs::remove_file(&file)?;
    let after_put = peak_rss_mib(gateway_pid)?;
    let out = c.get_object().bucket("rss").key("big").send().await?;
    let mut body = out.body;
    let mut n = 0usize;
    while let Some(chunk) = body.try_next().await? {
        n += chunk.len();
    }
    if n != size_mib * 1024 * 1024 {
        bail!("GET returned {n} bytes");
    }
    let after_get = peak_rss_mib(gateway_pid)?;
    Ok((after_put, after_get))
}
