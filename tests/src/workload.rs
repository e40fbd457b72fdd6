//! A mixed S3 workload for fault tests and the recovery benchmark: PUTs of new objects (sizes
//! from inline to several stripes) interleaved with GETs of earlier ones, every GET checked
//! byte for byte. It records every acknowledged write, so a test can check at the end that
//! nothing acknowledged was lost, and counts requests served and failed (availability).

use crate::{get_bytes, put_bytes, test_data};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Object sizes the workload cycles through: inline, one short stripe, several full stripes.
pub const SIZES: [usize; 6] = [
    1_000,
    20_000,
    300_000,
    1024 * 1024,
    2 * 1024 * 1024 + 5,
    4_096,
];

/// An acknowledged object: the seed and size of its bytes (see [`test_data`]).
pub type Acked = BTreeMap<String, (u64, usize)>;

#[derive(Debug, Default, Clone)]
pub struct WorkloadReport {
    pub puts_ok: u64,
    pub puts_failed: u64,
    pub gets_ok: u64,
    pub gets_failed: u64,
    /// GET latencies in ms, in order.
    pub get_latencies_ms: Vec<f64>,
    pub acked: Acked,
}

impl WorkloadReport {
    /// Share of requests served.
    pub fn availability(&self) -> f64 {
        let ok = self.puts_ok + self.gets_ok;
        let all = ok + self.puts_failed + self.gets_failed;
        if all == 0 {
            1.0
        } else {
            ok as f64 / all as f64
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "availability {:.2} % ({} of {} PUTs, {} of {} GETs served), {} objects acknowledged",
            self.availability() * 100.0,
            self.puts_ok,
            self.puts_ok + self.puts_failed,
            self.gets_ok,
            self.gets_ok + self.gets_failed,
            self.acked.len()
        )
    }
}

pub struct Workload {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<WorkloadReport>>,
    task: tokio::task::JoinHandle<()>,
}

impl Workload {
    /// Starts the workload on `bucket` with keys under `prefix`. `seed_base` keeps the data of
    /// different workloads apart.
    pub fn start(
        client: aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
        seed_base: u64,
    ) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(WorkloadReport::default()));
        let (bucket, prefix) = (bucket.to_string(), prefix.to_string());
        let (stop2, report2) = (stop.clone(), report.clone());
        let task = tokio::spawn(async move {
            let mut i = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                i += 1;
                if i % 2 == 1 {
                    let key = format!("{prefix}/w{i:06}");
                    let (seed, size) = (seed_base + i, SIZES[(i / 2) as usize % SIZES.len()]);
                    let ok = put_bytes(&client, &bucket, &key, &test_data(seed, size))
                        .await
                        .is_ok();
                    let mut r = report2.lock().expect("report");
                    if ok {
                        r.puts_ok += 1;
                        r.acked.insert(key, (seed, size));
                    } else {
                        r.puts_failed += 1;
                    }
                } else {
                    let pick = {
                        let r = report2.lock().expect("report");
                        let n = r.acked.len();
                        (n > 0).then(|| {
                            let idx = (i as usize * 7919) % n;
                            let (k, v) = r.acked.iter().nth(idx).expect("in range");
                            (k.clone(), *v)
                        })
                    };
                    let Some((key, (seed, size))) = pick else {
                        continue;
                    };
                    let started = Instant::now();
                    let got = get_bytes(&client, &bucket, &key).await;
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    let mut r = report2.lock().expect("report");
                    match got {
                        Ok(bytes) => {
                            assert!(
                                bytes == test_data(seed, size),
                                "GET {key} returned wrong bytes"
                            );
                            r.gets_ok += 1;
                            r.get_latencies_ms.push(ms);
                        }
                        Err(_) => r.gets_failed += 1,
                    }
                }
            }
        });
        Workload { stop, report, task }
    }

    /// The report so far, without stopping.
    pub fn snapshot(&self) -> WorkloadReport {
        self.report.lock().expect("report").clone()
    }

    pub async fn stop(self) -> WorkloadReport {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the workload task panicked");
        let r = self.report.lock().expect("report").clone();
        r
    }
}

/// Reads every acknowledged object and checks its bytes; returns the keys that failed.
pub async fn verify_acked(c: &aws_sdk_s3::Client, bucket: &str, acked: &Acked) -> Vec<String> {
    let mut bad = Vec::new();
    for (key, (seed, size)) in acked {
        match get_bytes(c, bucket, key).await {
            Ok(bytes) if bytes == test_data(*seed, *size) => {}
            Ok(_) => bad.push(format!("{key}: wrong bytes")),
            Err(e) => bad.push(format!("{key}: {e:#}")),
        }
    }
    bad
}

/// p-th percentile (0..=100) of `values`, nearest rank.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

/// Polls `cond` every 100 ms until it holds or `deadline` passes; returns the time it took.
pub async fn wait_for(
    deadline: Duration,
    mut cond: impl FnMut() -> bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > deadline {
            anyhow::bail!("condition not met within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(start.elapsed())
}
