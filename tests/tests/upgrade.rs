//! A rolling restart, the README's upgrade procedure (ADR 0010): every storage node of a
//! running 6-node, 2-gateway cluster is stopped (SIGTERM) and started again, one at a time,
//! each once the cluster sees every node Up again, while writers and readers keep working
//! through both gateways with clients that never retry. No request fails, and every
//! acknowledged write reads back afterwards. (That a new build reads what the previous one
//! wrote, and the other way round, is `common/tests/golden.rs`.)

use dmpstore_tests::{
    get_bytes, http_get_text, metric_sum, put_bytes, single_attempt_client_for, test_data, Cluster,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WRITERS: u64 = 4;
/// Keys each writer cycles through (overwriting them).
const KEYS_PER_WRITER: u64 = 16;

/// What the load saw: the last acknowledged body of every key (as its `test_data` seed and
/// size), operations done, and the failures.
#[derive(Default)]
struct Outcome {
    acked: HashMap<String, (u64, usize)>,
    ops: u64,
    failures: Vec<String>,
}

/// Writer `w`: overwrites its keys through gateway `w % 2` and reads each back at once,
/// until `stop`.
async fn writer(w: u64, c: aws_sdk_s3::Client, stop: Arc<AtomicBool>, out: Arc<Mutex<Outcome>>) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("w{w}/k{}", i % KEYS_PER_WRITER);
        let seed = w * 1_000_000 + i;
        // Sizes across inline, one stripe and several stripes.
        let size = [100, 20_000, 300_000, 1_500_000][(i % 4) as usize];
        let data = test_data(seed, size);
        let result = match put_bytes(&c, "rolling", &key, &data).await {
            Err(e) => Err(format!("PUT {key}: {e:#}")),
            Ok(_) => {
                out.lock().unwrap().acked.insert(key.clone(), (seed, size));
                match get_bytes(&c, "rolling", &key).await {
                    Ok(got) if got == data => Ok(()),
                    Ok(got) => Err(format!(
                        "GET {key}: {} bytes, not the {size} written",
                        got.len()
                    )),
                    Err(e) => Err(format!("GET {key}: {e:#}")),
                }
            }
        };
        let mut o = out.lock().unwrap();
        o.ops += 2;
        if let Err(e) = result {
            o.failures.push(e);
        }
        i += 1;
    }
}

/// Waits until every node is Up and reachable in `gateway admin status` (the nodes' view) and
/// in every gateway's `dmpstore_gateway_node_up` (the gateways' view): the README's condition
/// for stopping the next node.
fn wait_all_up(cluster: &Cluster) {
    let start = Instant::now();
    let n_nodes = cluster.nodes().len() as f64;
    loop {
        let nodes_see = cluster.admin_status().is_ok_and(|s| {
            s["nodes"].as_array().is_some_and(|nodes| {
                nodes
                    .iter()
                    .all(|n| n["state"] == "Up" && n["reachable"] == true)
            })
        });
        let gateways_see = cluster.info.s3_endpoints.iter().all(|e| {
            http_get_text(&format!("{e}/metrics"))
                .is_ok_and(|m| metric_sum(&m, "dmpstore_gateway_node_up") == n_nodes)
        });
        if nodes_see && gateways_see {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "nodes not all Up again"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarting_every_node_in_turn_under_load_fails_no_request_and_loses_nothing() {
    let mut cluster = Cluster::start(6, 2).unwrap();
    cluster
        .client(0)
        .create_bucket()
        .bucket("rolling")
        .send()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new(Outcome::default()));
    let load: Vec<_> = (0..WRITERS)
        .map(|w| {
            let c =
                single_attempt_client_for(&cluster.info, (w % 2) as usize, Duration::from_secs(30));
            tokio::spawn(writer(w, c, stop.clone(), out.clone()))
        })
        .collect();

    for idx in 0..6 {
        let before = out.lock().unwrap().ops;
        cluster.stop_node(idx).unwrap();
        cluster.restart_node(idx).unwrap();
        wait_all_up(&cluster);
        // The load went on across this node's restart.
        let start = Instant::now();
        while out.lock().unwrap().ops < before + 8 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the load stalled"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "n{} restarted; {} operations so far",
            idx + 1,
            out.lock().unwrap().ops
        );
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    let out = std::mem::take(&mut *out.lock().unwrap());
    if !out.failures.is_empty() {
        if let Ok(dir) = std::env::var("DMPSTORE_KEEP_LOGS") {
            cluster.save_logs(std::path::Path::new(&dir)).unwrap();
        }
    }
    let warnings: Vec<String> = cluster
        .logs()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("gateway"))
        .take(20)
        .map(str::to_string)
        .collect();
    assert!(
        out.failures.is_empty(),
        "{} of {} requests failed during the rolling restart, first: {:?}\ngateway warnings:\n{}",
        out.failures.len(),
        out.ops,
        &out.failures[..out.failures.len().min(5)],
        warnings.join("\n")
    );
    // Every acknowledged write, as last acknowledged, through both gateways.
    for g in 0..2 {
        let c = cluster.client(g);
        for (key, (seed, size)) in &out.acked {
            let got = get_bytes(&c, "rolling", key).await.unwrap();
            assert!(got == test_data(*seed, *size), "{key} through gateway {g}");
        }
    }
    cluster.assert_no_error_logs();
}
