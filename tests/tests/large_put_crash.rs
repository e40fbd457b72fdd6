//! `kill -9` of storage nodes in the middle of large PUTs (issue 11; DESIGN 7 and 14): a large
//! chunk's bytes are written once, to an extent file made durable before the RocksDB record
//! that references them (ADR 0011). Three writers PUT objects of 3 to 20 MiB while a seeded
//! fault schedule kills one node at a random moment, lets it stay dead a while and starts it
//! again, round after round. Afterwards every acknowledged object reads back byte for byte;
//! then, once the cluster reports itself fully redundant, two nodes are killed and every
//! acknowledged object still reads: each was on disk with the redundancy it was acknowledged
//! with, not only in some node's memory.

use dmpstore_tests::{get_bytes, put_bytes, test_data, wait_until, Cluster};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the fault schedule runs.
const FAULTS_FOR: Duration = Duration::from_secs(30);
const WRITERS: u64 = 3;

/// A small deterministic generator for the schedule (xorshift), seeded per run and printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_killed_mid_large_puts_lose_no_acknowledged_object() {
    let mut cluster = Cluster::start_with(6, 1, &["--repair-delay", "2"]).unwrap();
    let c = dmpstore_tests::client_with_timeout(&cluster, 0, Duration::from_secs(60));
    c.create_bucket().bucket("large").send().await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(String, u64, usize)>::new()));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (c, stop, acked, failed) = (c.clone(), stop.clone(), acked.clone(), failed.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let seed = w * 1_000_000 + i;
                    // 3 to 20 MiB, not stripe-aligned.
                    let size = (3 << 20) + (seed.wrapping_mul(2_654_435_761) % (17 << 20)) as usize;
                    let key = format!("w{w}/o{i}");
                    match put_bytes(&c, "large", &key, &test_data(seed, size)).await {
                        Ok(_) => acked.lock().unwrap().push((key, seed, size)),
                        Err(e) => failed.lock().unwrap().push(format!("{key}: {e:#}")),
                    }
                    i += 1;
                }
            })
        })
        .collect();

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("fault schedule seed {seed}");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < FAULTS_FOR {
        // The schedule's own timing (not synchronization): a kill lands at a random moment
        // of the PUTs in flight, and the node stays dead for a while.
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1500))).await;
        let victim = rng.below(6) as usize;
        cluster.kill_node(victim).unwrap();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(200 + rng.below(2500))).await;
        cluster.restart_node(victim).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let writes_stopped = Instant::now();
    let acked = acked.lock().unwrap().clone();
    let failed = failed.lock().unwrap().clone();
    let mib: usize = acked.iter().map(|(_, _, s)| s).sum::<usize>() >> 20;
    println!(
        "{kills} nodes killed; {} PUTs acknowledged ({mib} MiB), {} failed",
        acked.len(),
        failed.len()
    );
    for f in failed.iter().take(5) {
        println!("  failed: {f}");
    }
    assert!(kills >= 10, "the schedule ran {kills} kills");
    assert!(acked.len() >= 10, "only {} PUTs acknowledged", acked.len());

    let check_all = |label: &'static str| {
        let (c, acked) = (c.clone(), acked.clone());
        async move {
            for (key, seed, size) in &acked {
                match get_bytes(&c, "large", key).await {
                    Ok(got) if got == test_data(*seed, *size) => {}
                    Ok(got) => {
                        return Err(format!(
                            "{label}: {key} read back {} bytes that differ from the {size} \
                             acknowledged",
                            got.len()
                        ))
                    }
                    Err(e) => return Err(format!("{label}: GET {key}: {e:#}")),
                }
            }
            Ok(())
        }
    };
    let fail = |cluster: &Cluster, e: String| -> ! {
        let dir = std::env::temp_dir().join("large_put_crash-logs");
        let _ = cluster.save_logs(&dir);
        panic!("{e} (logs in {})", dir.display())
    };
    if let Err(e) = check_all("after the faults").await {
        fail(&cluster, e);
    }

    // Once repair has brought every version back to full redundancy, any two nodes may go.
    // "Fully redundant" is a census the nodes take from time to time: only one taken after
    // the last write counts (an older one may predate a PUT stored with a chunk missing).
    let mut last = serde_json::Value::Null;
    wait_until(Duration::from_secs(240), || {
        last = cluster.admin_status().unwrap_or_default();
        let census_after_writes = last["degraded"]["oldest_census_ms_ago"]
            .as_u64()
            .is_some_and(|ms| Duration::from_millis(ms) < writes_stopped.elapsed());
        census_after_writes
            && last["repair_idle"].as_bool() == Some(true)
            && last["degraded"]["fully_redundant"].as_bool() == Some(true)
    })
    .unwrap_or_else(|e| panic!("never fully redundant: {e}\n{last:#}"));
    let victims = [rng.below(3) as usize, 3 + rng.below(3) as usize];
    for v in victims {
        cluster.kill_node(v).unwrap();
    }
    if let Err(e) = check_all("with two nodes dead").await {
        fail(&cluster, e);
    }
}
