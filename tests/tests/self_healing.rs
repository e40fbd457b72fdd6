//! The fault suite (DESIGN 10-11): failures during a mixed workload with a real S3 client.
//! Every scenario records every acknowledged write and checks all of them byte for byte at the
//! end, and prints availability (share of requests served), T_FD and T_RT.
//!
//! Clusters run with `--repair-delay 2` (and 200 ms heartbeats), so a failure heals in seconds.

use dmpstore_common::cluster::{ClusterMap, NodeInfo};
use dmpstore_common::ids::NodeId;
use dmpstore_common::placement::partition_replicas;
use dmpstore_tests::workload::{verify_acked, wait_for, Workload};
use dmpstore_tests::Cluster;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const REPAIR_DELAY: &str = "2";

fn start(n_nodes: usize) -> Cluster {
    Cluster::start_with(n_nodes, 1, &["--repair-delay", REPAIR_DELAY]).unwrap()
}

/// The storage nodes' map as the gateways see it (ids, zones), to reason about replicas. Nodes
/// added after `up` (beyond those node 1's config lists) are data nodes.
fn cluster_map(cluster: &Cluster) -> ClusterMap {
    let founding = std::fs::read_to_string(&cluster.node(0).config)
        .unwrap()
        .matches("[[nodes]]")
        .count();
    let mut nodes: Vec<NodeInfo> = cluster
        .nodes()
        .iter()
        .map(|p| {
            let config = std::fs::read_to_string(&p.config).unwrap();
            let zone = config
                .lines()
                .find_map(|l| l.strip_prefix("zone = "))
                .unwrap()
                .trim_matches('"')
                .to_string();
            NodeInfo {
                id: NodeId(p.id.trim_start_matches('n').parse().unwrap()),
                addr: p.addr.clone(),
                zone,
                weight: 1,
            }
        })
        .collect();
    let added = nodes.split_off(founding);
    let mut map = ClusterMap::new(1, nodes).unwrap();
    for n in added {
        map = map.with_data_node(n).unwrap();
    }
    map
}

fn status(cluster: &Cluster) -> Value {
    cluster.admin_status().unwrap()
}

fn node_state(s: &Value, idx: usize) -> String {
    s["nodes"][idx]["state"].as_str().unwrap_or("").to_string()
}

/// Waits until the admin status shows node `idx` Down, every other node agreeing it is dead
/// past the repair delay, and repair idle everywhere; returns the final status.
/// P_FT's loss for a year with RS(4,2) versions missing one chunk that cannot be rebuilt:
/// two of the `others` nodes holding their other chunks fail (each at the default 5 % a year).
fn loss_with_one_chunk_missing(others: i32) -> f64 {
    let q = 1.0 - (-0.05f64).exp();
    1.0 - (1.0 - q).powi(others) - f64::from(others) * q * (1.0 - q).powi(others - 1)
}

async fn wait_healed(cluster: &Cluster, dead: &[usize]) -> Value {
    let ids: Vec<u64> = dead.iter().map(|&i| i as u64 + 1).collect();
    let mut last = Value::Null;
    wait_for(Duration::from_secs(180), || {
        last = status(cluster);
        let agreed: BTreeSet<u64> = last["dead_agreed"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        ids.iter().all(|id| agreed.contains(id))
            && last["repair_idle"].as_bool() == Some(true)
            && last["degraded"]["fully_redundant"].as_bool() == Some(true)
            && last["last_t_fr_ms"].is_u64()
    })
    .await
    .unwrap_or_else(|e| panic!("repair did not finish: {e}\n{last:#}\n{}", cluster.logs()));
    last
}

/// A client of gateway 0, a new bucket, and a mixed workload on it that has had `acked`
/// writes acknowledged.
async fn under_load(
    cluster: &Cluster,
    bucket: &str,
    seed: u64,
    acked: usize,
) -> (aws_sdk_s3::Client, Workload) {
    let c = dmpstore_tests::client_with_timeout(cluster, 0, Duration::from_secs(20));
    c.create_bucket().bucket(bucket).send().await.unwrap();
    let workload = Workload::start(c.clone(), bucket, "w", seed);
    wait_for(Duration::from_secs(60), || {
        workload.snapshot().acked.len() >= acked
    })
    .await
    .unwrap();
    (c, workload)
}

/// Waits until the admin status shows every node of `idx` Up and answering; returns it.
async fn wait_up(cluster: &Cluster, idx: &[usize]) -> Value {
    let mut last = Value::Null;
    wait_for(Duration::from_secs(60), || {
        last = status(cluster);
        idx.iter()
            .all(|&i| node_state(&last, i) == "Up" && last["nodes"][i]["reachable"] == true)
    })
    .await
    .unwrap_or_else(|e| panic!("nodes {idx:?} not up: {e}\n{last:#}"));
    last
}

fn ms(v: &Value) -> String {
    v.as_u64()
        .map_or("-".into(), |v| format!("{:.2} s", v as f64 / 1000.0))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_node_is_detected_and_its_chunks_rebuilt_elsewhere() {
    // 7 nodes: with one dead, 6 remain to hold all k + m = 6 chunks of every stripe again.
    let cluster = start(7);
    let (c, workload) = under_load(&cluster, "heal", 1_000, 30).await;

    let victim = std::env::var("DMPSTORE_TEST_VICTIM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(std::process::id() as usize % 7);
    let killed_at = Instant::now();
    cluster.kill_node(victim).unwrap();
    wait_for(Duration::from_secs(30), || {
        node_state(&status(&cluster), victim) == "Down"
    })
    .await
    .unwrap();
    let seen_down = killed_at.elapsed();
    let healed = wait_healed(&cluster, &[victim]).await;
    println!(
        "status of 7 nodes, RS(4,2), after the rebuild:\n{}",
        cluster.admin(&["status"]).unwrap()
    );
    let rebuilt = healed["rebuilt_bytes"].as_u64().unwrap_or(0);
    let report = workload.stop().await;
    println!(
        "kill -9 of n{}: {}; down in the admin view after {:.2} s; T_FD {}, repair delay {}, T_FR {}, T_RT {}; {:.1} MiB rebuilt",
        victim + 1,
        report.summary(),
        seen_down.as_secs_f64(),
        ms(&healed["last_t_fd_ms"]),
        ms(&healed["repair_delay_ms"]),
        ms(&healed["last_t_fr_ms"]),
        ms(&healed["last_t_rt_ms"]),
        rebuilt as f64 / 1048576.0
    );
    assert!(
        rebuilt > 0,
        "nothing was rebuilt:\n{healed:#}\n{}",
        cluster.logs()
    );
    assert!(report.acked.len() >= 30);

    // The same figures on /metrics: nodes report what they rebuilt and that the victim is
    // down; the gateway reports its traffic.
    let node_metrics: String = (0..7)
        .filter(|&i| i != victim)
        .map(|i| cluster.node_metrics_at(&cluster.node(i).addr).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(dmpstore_tests::metric_sum(&node_metrics, "dmpstore_chunks_repaired_total") > 0.0);
    assert!(
        dmpstore_tests::metric_sum(&node_metrics, "dmpstore_last_failure_detection_seconds") > 0.0
    );
    let down_line = format!(
        "dmpstore_peer_state{{peer=\"n{}\",state=\"down\"}} 1",
        victim + 1
    );
    assert_eq!(
        node_metrics.matches(&down_line).count(),
        6,
        "{node_metrics}"
    );
    let gw = dmpstore_tests::http_get_text(&format!("{}/metrics", cluster.info.s3_endpoints[0]))
        .unwrap();
    assert!(
        dmpstore_tests::metric_sum(&gw, "dmpstore_s3_bytes_in_total") > 0.0,
        "{gw}"
    );
    assert!(
        dmpstore_tests::metric_sum(&gw, "dmpstore_s3_bytes_out_total") > 0.0,
        "{gw}"
    );
    assert!(
        gw.contains("dmpstore_s3_requests_total{method=\"PUT\",status=\"200\"}"),
        "{gw}"
    );

    // Full redundancy is back: two more failures must leave every object readable.
    let (b, d) = pick_victims(&cluster, 7, &[victim], &[], &["", "heal"]);
    cluster.kill_node(b).unwrap();
    cluster.kill_node(d).unwrap();
    let bad = verify_acked(&c, "heal", &report.acked).await;
    assert!(
        bad.is_empty(),
        "with n{}, n{} and n{} dead, {} of {} acknowledged objects are not readable: {:?}",
        victim + 1,
        b + 1,
        d + 1,
        bad.len(),
        report.acked.len(),
        &bad[..bad.len().min(5)]
    );
    cluster.assert_no_error_logs();
}

/// Kills the nodes `victims` and reads every acknowledged object: they must all be readable
/// (the victims must leave every partition the workload uses a majority of live replicas).
async fn assert_survives(
    cluster: &Cluster,
    c: &aws_sdk_s3::Client,
    bucket: &str,
    acked: &dmpstore_tests::workload::Acked,
    victims: &[usize],
) {
    for &v in victims {
        cluster.kill_node(v).unwrap();
    }
    let bad = verify_acked(c, bucket, acked).await;
    assert!(
        bad.is_empty(),
        "with nodes {victims:?} killed, {} of {} acknowledged objects are not readable: {:?}",
        bad.len(),
        acked.len(),
        &bad[..bad.len().min(5)]
    );
}

/// Two live nodes, not in `keep`, whose loss (with `dead_already`) leaves every partition in
/// `partitions` a majority of live replicas. Metadata replicas are not re-created on other
/// nodes yet (that needs membership changes), so a test that kills more nodes than `m` picks
/// them this way; every object has chunks on every survivor, so what these kills test is the
/// chunk redundancy.
fn pick_victims(
    cluster: &Cluster,
    n_nodes: usize,
    dead_already: &[usize],
    keep: &[usize],
    partitions: &[&str],
) -> (usize, usize) {
    let candidates: Vec<usize> = (0..n_nodes)
        .filter(|i| !dead_already.contains(i) && !keep.contains(i))
        .collect();
    candidates
        .iter()
        .flat_map(|&b| candidates.iter().map(move |&d| (b, d)))
        .find(|&(b, d)| {
            let mut all = dead_already.to_vec();
            all.extend([b, d]);
            b < d && victims_ok(cluster, &all, partitions)
        })
        .expect("two nodes whose loss leaves every partition a majority")
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_down_at_once_lose_no_read_and_writes_keep_k_plus_one_chunks() {
    let mut cluster = start(7);
    let (c, workload) = under_load(&cluster, "two", 2_000, 20).await;
    let (x, y) = (1usize, 4usize);
    cluster.kill_node(x).unwrap();
    cluster.kill_node(y).unwrap();
    // A PUT in flight at the kill may lose two chunk slots after its first stripe and then
    // be refused (fewer than k + 1 chunks, DESIGN 8); once the gateway has seen both nodes
    // fail, with 5 of 7 nodes up every stripe gets k + 1 = 5 chunks and no write fails.
    let before = workload.snapshot();
    wait_for(Duration::from_secs(60), || {
        workload.snapshot().acked.len() >= before.acked.len() + 5
    })
    .await
    .unwrap();
    let settled = workload.snapshot();
    wait_for(Duration::from_secs(120), || {
        workload.snapshot().acked.len() >= settled.acked.len() + 30
    })
    .await
    .unwrap();
    let during = workload.stop().await;
    println!(
        "n{} and n{} killed at once: {}",
        x + 1,
        y + 1,
        during.summary()
    );
    assert_eq!(during.gets_failed, 0, "a read failed with two nodes down");
    assert!(
        during.puts_failed <= settled.puts_failed,
        "a write failed after the failures were known: {}",
        during.summary()
    );
    assert!(settled.puts_failed <= 2, "{}", settled.summary());

    // Both are declared Down and their chunks rebuilt where there is room (5 nodes up, 6
    // chunks per stripe): every version keeps one chunk missing for want of a spare node,
    // and status says so rather than calling the cluster healthy. Then both come back, the
    // missing chunks are rebuilt onto them, and every object survives two more failures.
    let mut last = Value::Null;
    wait_for(Duration::from_secs(180), || {
        last = status(&cluster);
        let d = &last["degraded"];
        last["dead_agreed"].as_array().is_some_and(|a| a.len() == 2)
            && last["repair_idle"].as_bool() == Some(true)
            && d["versions"].as_u64() > Some(0)
            && d["by_reason"]["no spare node"] == d["versions"]
            && d["by_missing"]["1"] == d["versions"]
    })
    .await
    .unwrap_or_else(|e| panic!("two nodes down: not reported as short of a spare: {e}\n{last:#}"));
    assert!(
        last["last_t_fr_ms"].is_null(),
        "T_FR recorded while versions are degraded:\n{last:#}"
    );
    // P_FT counts the degradation: one chunk missing with nowhere to rebuild it, so for the
    // whole year a version is lost if two of the five nodes up, which hold its other chunks,
    // fail.
    let degraded_loss = last["fault_tolerance"]["annual_loss"].as_f64().unwrap();
    assert!(
        (degraded_loss - loss_with_one_chunk_missing(5)).abs() < 1e-9,
        "{last:#}"
    );
    println!(
        "two nodes down, rebuilt where there is room: {} versions miss one chunk (no spare node)",
        last["degraded"]["versions"]
    );
    cluster.restart_node(x).unwrap();
    cluster.restart_node(y).unwrap();
    wait_for(Duration::from_secs(60), || {
        let s = status(&cluster);
        node_state(&s, x) == "Up" && node_state(&s, y) == "Up"
    })
    .await
    .unwrap();
    let mut last = Value::Null;
    wait_for(Duration::from_secs(180), || {
        last = status(&cluster);
        last["repair_idle"].as_bool() == Some(true)
            && last["dead_agreed"].as_array().is_some_and(Vec::is_empty)
            && last["degraded"]["fully_redundant"].as_bool() == Some(true)
            && last["last_t_fr_ms"].is_u64()
            && last["nodes"].as_array().is_some_and(|n| {
                n.iter()
                    .map(|n| n["repaired_versions"].as_u64().unwrap_or(0))
                    .sum::<u64>()
                    > 0
            })
    })
    .await
    .unwrap_or_else(|e| panic!("no repair after the nodes returned: {e}\n{last:#}"));
    // Each failure keeps its own figures: both nodes, each with its T_FD, the T_FR of the
    // rebuild that restored redundancy, and T_RT = T_FD + delay + T_FR.
    let failures = last["failures"].as_array().cloned().unwrap_or_default();
    for victim in [x, y] {
        let f = failures
            .iter()
            .find(|f| f["node"].as_u64() == Some(victim as u64 + 1))
            .unwrap_or_else(|| panic!("no failure of n{} in status:\n{last:#}", victim + 1));
        let (fd, fr) = (f["t_fd_ms"].as_u64().unwrap(), f["t_fr_ms"].as_u64());
        assert!(fd > 0 && fr.is_some(), "{f:#}");
        assert_eq!(
            f["t_rt_ms"].as_u64(),
            Some(fd + last["repair_delay_ms"].as_u64().unwrap() + fr.unwrap()),
            "{f:#}"
        );
    }
    // Whole again: P_FT is the Markov figure with the recovery time modelled from the
    // measured rebuild rate, orders of magnitude above the degraded one.
    let ft = &last["fault_tolerance"];
    assert_eq!(ft["missing_chunks"].as_u64(), Some(0), "{last:#}");
    assert!(
        ft["rebuild_rate_source"]
            .as_str()
            .is_some_and(|s| s.starts_with("measured")),
        "{last:#}"
    );
    assert!(
        ft["annual_loss"].as_f64().unwrap() < degraded_loss * 1e-6,
        "{last:#}"
    );
    println!(
        "two nodes down and back: T_FD {}, repair delay {}, T_FR {}, T_RT {}",
        ms(&last["last_t_fd_ms"]),
        ms(&last["repair_delay_ms"]),
        ms(&last["last_t_fr_ms"]),
        ms(&last["last_t_rt_ms"])
    );
    let (b, d) = pick_victims(&cluster, 7, &[], &[], &["", "two"]);
    assert_survives(&cluster, &c, "two", &during.acked, &[b, d]).await;
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_isolated_node_is_routed_around_and_brings_back_nothing_deleted() {
    let cluster = start(7);
    let c = dmpstore_tests::client_with_timeout(&cluster, 0, Duration::from_secs(20));
    c.create_bucket().bucket("part").send().await.unwrap();
    for i in 0..10u64 {
        let data = dmpstore_tests::test_data(900 + i, 100_000);
        dmpstore_tests::put_bytes(&c, "part", &format!("doomed/{i}"), &data)
            .await
            .unwrap();
    }
    let workload = Workload::start(c.clone(), "part", "w", 3_000);
    wait_for(Duration::from_secs(60), || {
        workload.snapshot().acked.len() >= 20
    })
    .await
    .unwrap();

    // Cut one node off (it answers no one and reaches no one) for long enough that it is
    // declared Down and its chunks are rebuilt elsewhere; delete objects meanwhile.
    let cut = 2usize;
    cluster
        .admin(&["isolate", "--node", &(cut + 1).to_string(), "--secs", "600"])
        .unwrap();
    let healed = wait_healed(&cluster, &[cut]).await;
    for i in 0..10u64 {
        c.delete_object()
            .bucket("part")
            .key(format!("doomed/{i}"))
            .send()
            .await
            .unwrap();
    }
    // Heal the partition.
    cluster
        .admin(&["isolate", "--node", &(cut + 1).to_string(), "--secs", "0"])
        .unwrap();
    wait_for(Duration::from_secs(60), || {
        node_state(&status(&cluster), cut) == "Up"
    })
    .await
    .unwrap();
    let report = workload.stop().await;
    println!(
        "n{} isolated and healed: {}; T_FD {}, repair delay {}, T_FR {}, T_RT {}",
        cut + 1,
        report.summary(),
        ms(&healed["last_t_fd_ms"]),
        ms(&healed["repair_delay_ms"]),
        ms(&healed["last_t_fr_ms"]),
        ms(&healed["last_t_rt_ms"])
    );
    assert!(report.availability() >= 0.99, "{}", report.summary());

    // Nothing deleted while the node was away comes back with it.
    let listed = c
        .list_objects_v2()
        .bucket("part")
        .prefix("doomed/")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(0), "deleted objects listed again");
    for i in 0..10u64 {
        let err = c
            .get_object()
            .bucket("part")
            .key(format!("doomed/{i}"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            err.raw_response().map(|r| r.status().as_u16()),
            Some(404),
            "doomed/{i} readable after the node returned"
        );
    }
    let bad = verify_acked(&c, "part", &report.acked).await;
    assert!(bad.is_empty(), "{bad:?}");
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_cluster_killed_at_once_loses_nothing_acknowledged() {
    let mut cluster = start(6);
    let (c, workload) = under_load(&cluster, "all", 4_000, 40).await;
    for i in 0..6 {
        cluster.kill_node(i).unwrap();
    }
    for i in 0..6 {
        cluster.restart_node(i).unwrap();
    }
    let at_restart = workload.snapshot().acked.len();
    wait_for(Duration::from_secs(120), || {
        workload.snapshot().acked.len() >= at_restart + 20
    })
    .await
    .unwrap();
    let report = workload.stop().await;
    println!("all 6 nodes killed and restarted: {}", report.summary());
    let bad = verify_acked(&c, "all", &report.acked).await;
    assert!(bad.is_empty(), "{bad:?}");
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wiped_node_replaced_by_an_empty_one_is_refilled() {
    let mut cluster = start(7);
    let (c, workload) = under_load(&cluster, "refill", 5_000, 40).await;
    let report = workload.stop().await;

    // The node loses its disk and comes back empty with the same identity.
    let wiped = 3usize;
    cluster.wipe_node(wiped).unwrap();
    wait_for(Duration::from_secs(60), || {
        let s = status(&cluster);
        node_state(&s, wiped) == "Up" && s["nodes"][wiped]["reachable"] == true
    })
    .await
    .unwrap();
    let before = status(&cluster);
    if let Err(e) = cluster.admin(&["replace", "--node", &(wiped + 1).to_string()]) {
        panic!("{e:#}\n{}", cluster.node_log(wiped));
    }
    let mut last = Value::Null;
    wait_for(Duration::from_secs(180), || {
        last = status(&cluster);
        last["repair_idle"].as_bool() == Some(true)
            && last["rebuilt_bytes"].as_u64() > before["rebuilt_bytes"].as_u64()
    })
    .await
    .unwrap_or_else(|e| panic!("the node was not refilled: {e}\n{last:#}"));
    let chunks = last["nodes"][wiped]["chunks_estimate"]
        .as_u64()
        .unwrap_or(0);
    println!(
        "n{} wiped and refilled: {:.1} MiB rebuilt onto it, about {chunks} chunks",
        wiped + 1,
        (last["rebuilt_bytes"].as_u64().unwrap_or(0)
            - before["rebuilt_bytes"].as_u64().unwrap_or(0)) as f64
            / 1048576.0
    );
    // The refilled node counts: with two other nodes gone, every object is still readable.
    let pair = pick_victims(&cluster, 7, &[], &[wiped], &["", "refill"]);
    assert_survives(&cluster, &c, "refill", &report.acked, &[pair.0, pair.1]).await;
    cluster.assert_no_error_logs();
}

/// Whether killing `victims` leaves every partition a majority of live replicas.
fn victims_ok(cluster: &Cluster, victims: &[usize], partitions: &[&str]) -> bool {
    let map = cluster_map(cluster);
    partitions.iter().all(|p| {
        let set = partition_replicas(&map, p, 5);
        let dead = victims
            .iter()
            .filter(|&&i| set.contains(&NodeId(i as u32 + 1)))
            .count();
        set.len() - dead > set.len() / 2
    })
}

/// Stops every node, damages every occurrence of each marker in their blob files (where a
/// stopped node keeps its chunk bytes), and starts them again. Returns, per marker, the
/// nodes where it was found.
fn corrupt_on_disk(cluster: &mut Cluster, markers: &[&[u8]]) -> Vec<Vec<usize>> {
    let n = cluster.nodes().len();
    for i in 0..n {
        cluster.stop_node(i).unwrap();
    }
    let damaged = markers
        .iter()
        .map(|marker| {
            (0..n)
                .filter(|&i| {
                    let dir = std::path::PathBuf::from(cluster.node(i).data_dir.clone().unwrap());
                    dmpstore_tests::corrupt_in_blob_files(&dir, marker) > 0
                })
                .collect()
        })
        .collect();
    for i in 0..n {
        cluster.restart_node(i).unwrap();
    }
    damaged
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupted_chunk_files_are_found_by_scrub_and_rebuilt() {
    let mut cluster = start(6);
    let c = dmpstore_tests::client_with_timeout(&cluster, 0, Duration::from_secs(20));
    c.create_bucket().bucket("rot").send().await.unwrap();
    let mut objects = Vec::new();
    for i in 0..2u64 {
        let data = dmpstore_tests::test_data(6_000 + i, 600_000);
        dmpstore_tests::put_bytes(&c, "rot", &format!("o{i}"), &data)
            .await
            .unwrap();
        objects.push(data);
    }
    // Damage chunk 0 of each object on disk, then scrub.
    let markers: Vec<&[u8]> = objects.iter().map(|d| &d[5_000..5_064]).collect();
    let damaged_nodes: BTreeSet<usize> = corrupt_on_disk(&mut cluster, &markers)
        .into_iter()
        .flatten()
        .collect();
    assert!(!damaged_nodes.is_empty() && damaged_nodes.len() <= 2);
    cluster.admin(&["scrub"]).unwrap();
    let mut last = Value::Null;
    wait_for(Duration::from_secs(120), || {
        last = status(&cluster);
        last["scrub_passes"].as_u64() >= Some(6)
            && last["healed_chunks"].as_u64() >= Some(objects.len() as u64)
            && last["repair_idle"].as_bool() == Some(true)
    })
    .await
    .unwrap_or_else(|e| panic!("scrub did not heal: {e}\n{last:#}"));
    println!(
        "scrub: {} chunks verified, {} corrupt chunks rebuilt in place",
        last["scrubbed_chunks"], last["healed_chunks"]
    );
    // The healed chunks count again: with two other nodes gone (each holding one chunk of
    // every stripe), a stripe whose chunk 0 were still corrupt would have only 3 of the 4
    // chunks it needs.
    let victims: Vec<usize> = (0..6)
        .filter(|i| !damaged_nodes.contains(i))
        .take(2)
        .collect();
    for &v in &victims {
        cluster.kill_node(v).unwrap();
    }
    for (i, data) in objects.iter().enumerate() {
        let got = dmpstore_tests::get_bytes(&c, "rot", &format!("o{i}"))
            .await
            .unwrap_or_else(|e| panic!("o{i} with nodes {victims:?} down: {e:#}"));
        assert!(&got == data, "o{i} differs");
    }
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_node_gives_up_its_chunks_while_reads_go_on() {
    let cluster = start(7);
    let (c, workload) = under_load(&cluster, "drain", 6_000, 40).await;
    let drained = 5usize;
    cluster
        .admin(&["drain", "--node", &(drained + 1).to_string()])
        .unwrap();
    let healed = wait_healed(&cluster, &[drained]).await;
    assert_eq!(healed["nodes"][drained]["draining"], true, "{healed:#}");
    let report = workload.stop().await;
    println!(
        "n{} drained under load: {}; {:.1} MiB moved",
        drained + 1,
        report.summary(),
        healed["rebuilt_bytes"].as_u64().unwrap_or(0) as f64 / 1048576.0
    );
    assert_eq!(
        report.gets_failed + report.puts_failed,
        0,
        "{}",
        report.summary()
    );
    assert!(healed["rebuilt_bytes"].as_u64() > Some(0));
    // Nothing needs the drained node any more: with it and two more nodes gone, every
    // acknowledged object (written before, during and after the drain) is readable.
    let (b, d) = pick_victims(&cluster, 7, &[drained], &[], &["", "drain"]);
    assert_survives(&cluster, &c, "drain", &report.acked, &[drained, b, d]).await;
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_added_and_a_node_drained_under_load_move_chunks_without_a_failed_request() {
    // Moved chunks are dropped 1 s after the move.
    let mut cluster = Cluster::start_with(
        6,
        1,
        &["--repair-delay", REPAIR_DELAY, "--replaced-data-grace", "1"],
    )
    .unwrap();
    let (c, workload) = under_load(&cluster, "grow", 7_000, 40).await;

    // Add n7: the owners move to it the chunks whose rendezvous placement now picks it.
    let added = cluster.add_node().unwrap();
    let mut last = Value::Null;
    wait_for(Duration::from_secs(120), || {
        last = status(&cluster);
        let chunks = |i: usize| last["nodes"][i]["chunks_estimate"].as_u64().unwrap_or(0);
        let others_min = (0..added).map(chunks).min().unwrap_or(0);
        last["map_version"].as_u64() == Some(2)
            && last["nodes"][added]["metadata"] == false
            && node_state(&last, added) == "Up"
            && last["repair_idle"].as_bool() == Some(true)
            // Every object written before the add has 6 chunks on 6 of now 7 nodes: about 6
            // in 7 of them move one chunk to n7.
            && chunks(added) * 2 >= others_min
            && others_min > 0
    })
    .await
    .unwrap_or_else(|e| panic!("rebalance onto the added node did not finish: {e}\n{last:#}"));
    let moved = last["rebuilt_bytes"].as_u64().unwrap_or(0);
    println!(
        "n{} added under load: {} chunks on it, {:.1} MiB moved",
        added + 1,
        last["nodes"][added]["chunks_estimate"],
        moved as f64 / 1048576.0
    );
    assert!(moved > 0, "{last:#}");

    // Drain n2 (a founding node): its chunks move off while it keeps serving.
    let drained = 1usize;
    cluster
        .admin(&["drain", "--node", &(drained + 1).to_string()])
        .unwrap();
    let healed = wait_healed(&cluster, &[drained]).await;
    let report = workload.stop().await;
    println!(
        "n{} drained under load after the add: {}; {:.1} MiB moved in all",
        drained + 1,
        report.summary(),
        healed["rebuilt_bytes"].as_u64().unwrap_or(0) as f64 / 1048576.0
    );
    assert_eq!(
        report.gets_failed + report.puts_failed,
        0,
        "{}",
        report.summary()
    );
    // Garbage collection: every node drops what moved off it once the grace has passed.
    wait_for(Duration::from_secs(120), || {
        last = status(&cluster);
        last["drops_pending"].as_u64() == Some(0)
            && last["nodes"][drained]["dropped_moved_chunks"].as_u64() > Some(0)
    })
    .await
    .unwrap_or_else(|e| panic!("moved chunks were not dropped: {e}\n{last:#}"));
    println!(
        "gc: {} moved chunks dropped, {} of them on the drained n{}",
        last["dropped_moved_chunks"],
        last["nodes"][drained]["dropped_moved_chunks"],
        drained + 1
    );
    // Every object now has its 6 chunks on the 6 nodes other than n2, n7 included: with n2
    // and two more founding nodes gone, reading anything needs n7's chunks.
    let (b, d) = pick_victims(&cluster, added, &[drained], &[], &["", "grow"]);
    assert_survives(&cluster, &c, "grow", &report.acked, &[drained, b, d]).await;
    // And the drained node holds nothing any more: every chunk it had moved and was dropped.
    let inventory = inspect(&cluster, drained);
    assert_eq!(
        inventory["chunks"],
        0,
        "drained n{}: {inventory}",
        drained + 1
    );
    assert_eq!(inventory["indexed_versions"], 0, "{inventory}");
    cluster.assert_no_error_logs();
}

/// `storage-node --inspect` of a stopped node: exact counts of what it holds.
fn inspect(cluster: &Cluster, idx: usize) -> Value {
    inspect_with(cluster, idx, &[])
}

fn inspect_with(cluster: &Cluster, idx: usize, extra: &[&str]) -> Value {
    let out = std::process::Command::new(dmpstore_tests::bin_dir().join("storage-node"))
        .args(["--config", &cluster.node(idx).config, "--inspect"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn anti_entropy_brings_a_replica_that_missed_writes_up_to_date() {
    let mut cluster = start(6);
    let c = dmpstore_tests::client_with_timeout(&cluster, 0, Duration::from_secs(20));
    c.create_bucket().bucket("entropy").send().await.unwrap();
    let data = |i: u64| dmpstore_tests::test_data(9_000 + i, 1_000);
    for i in 0..20 {
        dmpstore_tests::put_bytes(&c, "entropy", &format!("k{i:02}"), &data(i))
            .await
            .unwrap();
    }
    let replicas = partition_replicas(&cluster_map(&cluster), "entropy", 5);
    let idx = |n: NodeId| n.0 as usize - 1;
    let (away, witness) = (idx(replicas[0]), idx(replicas[1]));
    // One replica misses 30 PUTs and 5 DELETEs. Nothing reads those keys afterwards, so no
    // read repair brings them to it.
    cluster.stop_node(away).unwrap();
    for i in 20..50 {
        dmpstore_tests::put_bytes(&c, "entropy", &format!("k{i:02}"), &data(i))
            .await
            .unwrap();
    }
    for i in 0..5 {
        c.delete_object()
            .bucket("entropy")
            .key(format!("k{i:02}"))
            .send()
            .await
            .unwrap();
    }
    let records = |i: usize, cluster: &Cluster| {
        inspect_with(cluster, i, &["--partition", "entropy"])["partition_records"]
            .as_u64()
            .unwrap()
    };
    let before = records(away, &cluster);
    assert_eq!(before, 20, "the stopped replica holds what it saw");
    cluster.restart_node(away).unwrap();
    let mut last = wait_up(&cluster, &[away]).await;
    let passes_before = last["anti_entropy_passes"].as_u64().unwrap();
    cluster.admin(&["anti-entropy"]).unwrap();
    wait_for(Duration::from_secs(60), || {
        last = status(&cluster);
        last["anti_entropy_passes"].as_u64() >= Some(passes_before + 6)
    })
    .await
    .unwrap_or_else(|e| panic!("anti-entropy passes did not finish: {e}\n{last:#}"));
    println!(
        "anti-entropy: {} stale records brought to n{}",
        last["anti_entropy_repaired"],
        away + 1
    );
    assert!(
        last["anti_entropy_repaired"].as_u64() >= Some(35),
        "{last:#}"
    );
    cluster.stop_node(away).unwrap();
    cluster.stop_node(witness).unwrap();
    // 45 objects and 5 tombstones, on the replica that was away as on one that was not.
    assert_eq!(records(witness, &cluster), 50);
    assert_eq!(records(away, &cluster), 50);
    cluster.assert_no_error_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_node_removed_under_load_has_its_metadata_replicas_recreated_elsewhere() {
    let mut cluster = start(7);
    let (c, workload) = under_load(&cluster, "shrink", 8_000, 40).await;
    let before = cluster_map(&cluster);
    let old = partition_replicas(&before, "shrink", 5);
    let idx = |n: NodeId| n.0 as usize - 1;
    let (dead, v1, v2, s1, s2) = (
        idx(old[0]),
        idx(old[1]),
        idx(old[2]),
        idx(old[3]),
        idx(old[4]),
    );
    // A batch of small objects (kept in their metadata records) reaches only three of the
    // partition's replicas: the one that will die and the two that will die after it.
    cluster.stop_node(s1).unwrap();
    cluster.stop_node(s2).unwrap();
    let mut batch = Vec::new();
    for i in 0..20u64 {
        let key = format!("three/{i:02}");
        let data = dmpstore_tests::test_data(8_500 + i, 2_000);
        dmpstore_tests::put_bytes(&c, "shrink", &key, &data)
            .await
            .unwrap();
        batch.push((key, data));
    }
    cluster.restart_node(s1).unwrap();
    cluster.restart_node(s2).unwrap();
    wait_up(&cluster, &[s1, s2]).await;

    cluster.kill_node(dead).unwrap();
    let out = cluster
        .admin(&[
            "remove",
            "--node",
            &(dead + 1).to_string(),
            "--timeout-secs",
            "300",
        ])
        .unwrap_or_else(|e| panic!("remove failed: {e:#}\n{}", cluster.logs()));
    println!("{out}");
    let report = workload.stop().await;
    println!("n{} removed under load: {}", dead + 1, report.summary());
    assert_eq!(
        report.gets_failed + report.puts_failed,
        0,
        "{}",
        report.summary()
    );
    let s = status(&cluster);
    let ids: Vec<u64> = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 6, "{s:#}");
    assert!(!ids.contains(&(dead as u64 + 1)), "{s:#}");

    // The two other holders of the batch die too. Only the copies the metadata change made
    // (to the restarted replicas and to the node that took the dead one's place) are left.
    assert_survives(&cluster, &c, "shrink", &report.acked, &[v1, v2]).await;
    for (key, data) in &batch {
        let got = dmpstore_tests::get_bytes(&c, "shrink", key)
            .await
            .unwrap_or_else(|e| panic!("{key}: {e:#}"));
        assert!(&got == data, "{key} differs");
    }
    // The new replica holds the partition like the replicas that were there all along.
    let after = before
        .begin_metadata_change(
            before
                .metadata_nodes()
                .iter()
                .copied()
                .filter(|n| *n != old[0])
                .collect(),
        )
        .unwrap()
        .finish_metadata_change(Some(old[0]))
        .unwrap();
    let new_replicas = partition_replicas(&after, "shrink", 5);
    let newcomer = new_replicas
        .iter()
        .copied()
        .find(|n| !old.contains(n))
        .expect("a node took the dead replica's place");
    assert_eq!(new_replicas.len(), 5);
    cluster.stop_node(idx(newcomer)).unwrap();
    cluster.stop_node(s1).unwrap();
    let records = |i: usize| {
        inspect_with(&cluster, i, &["--partition", "shrink"])["partition_records"]
            .as_u64()
            .unwrap()
    };
    let (theirs, ours) = (records(s1), records(idx(newcomer)));
    println!(
        "partition records: {ours} on the new replica n{}, {theirs} on n{}",
        newcomer.0,
        s1 + 1
    );
    assert!(
        ours >= batch.len() as u64 + report.acked.len() as u64,
        "{ours}"
    );
    assert_eq!(ours, theirs);
    cluster.assert_no_error_logs();
}

/// Chunk writes the storage nodes have served (successful `put_chunk` RPCs), over all nodes.
fn chunk_writes(cluster: &Cluster) -> u64 {
    cluster
        .nodes()
        .iter()
        .filter_map(|p| cluster.node_metrics_at(&p.addr).ok())
        .flat_map(|text| {
            text.lines()
                .filter(|l| {
                    l.starts_with("dmpstore_node_rpc_requests_total{")
                        && l.contains("rpc=\"put_chunk\"")
                        && l.contains("outcome=\"ok\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn chunks_of_a_put_cut_off_by_a_gateway_crash_are_collected_as_orphans() {
    // Unreferenced chunks older than 2 s are orphans here; nothing else writes meanwhile.
    let cluster =
        Cluster::start_with(6, 2, &["--repair-delay", REPAIR_DELAY, "--orphan-gc", "2"]).unwrap();
    let live = dmpstore_tests::client_with_timeout(&cluster, 1, Duration::from_secs(20));
    live.create_bucket().bucket("orphans").send().await.unwrap();
    // Three committed objects of one stripe (6 chunks) each: these must stay.
    let mut kept = Vec::new();
    for i in 0..3u64 {
        let data = dmpstore_tests::test_data(7_700 + i, 1 << 20);
        let key = format!("kept/{i}");
        dmpstore_tests::put_bytes(&live, "orphans", &key, &data)
            .await
            .unwrap();
        kept.push((key, data));
    }
    // A PUT of 32 MiB through gateway 0 sends 8 MiB, then the gateway dies: the chunks it
    // wrote have no record.
    let url = cluster
        .client(0)
        .put_object()
        .bucket("orphans")
        .key("cut-off")
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(600)).unwrap(),
        )
        .await
        .unwrap()
        .uri()
        .to_string();
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let before = chunk_writes(&cluster);
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    use std::io::Write;
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
        32u64 << 20
    )
    .unwrap();
    stream
        .write_all(&dmpstore_tests::test_data(7_800, 8 << 20))
        .unwrap();
    wait_for(Duration::from_secs(60), || {
        chunk_writes(&cluster) >= before + 24
    })
    .await
    .unwrap();
    cluster.kill_gateway(0).unwrap();
    drop(stream);
    let mut last = Value::Null;
    wait_for(Duration::from_secs(120), || {
        last = status(&cluster);
        last["orphan_chunks_dropped"].as_u64() >= Some(24)
    })
    .await
    .unwrap_or_else(|e| panic!("orphans were not collected: {e}\n{last:#}"));
    // Two more complete scans on every node, so each has looked at everything.
    let passes = last["orphan_passes"].as_u64().unwrap();
    wait_for(Duration::from_secs(120), || {
        last = status(&cluster);
        last["orphan_passes"].as_u64() >= Some(passes + 12)
    })
    .await
    .unwrap_or_else(|e| panic!("orphan scans stalled: {e}\n{last:#}"));
    println!(
        "orphan scan: {} chunks of the cut-off PUT dropped",
        last["orphan_chunks_dropped"]
    );
    // The nodes' /metrics say the same.
    let from_metrics: f64 = cluster
        .nodes()
        .iter()
        .map(|p| {
            let text = cluster.node_metrics_at(&p.addr).unwrap();
            dmpstore_tests::metric_sum(
                &text.replace(
                    "dmpstore_housekeeping_total{kind=\"orphan_chunks_dropped\"}",
                    "orphan_chunks_dropped_total",
                ),
                "orphan_chunks_dropped_total",
            )
        })
        .sum();
    assert_eq!(
        Some(from_metrics as u64),
        last["orphan_chunks_dropped"].as_u64()
    );
    for (key, data) in &kept {
        let got = dmpstore_tests::get_bytes(&live, "orphans", key)
            .await
            .unwrap();
        assert!(&got == data, "{key} differs");
    }
    // Exactly the committed objects' chunks are left.
    let mut total = 0;
    for i in 0..6 {
        cluster.stop_node(i).unwrap();
        total += inspect(&cluster, i)["chunks"].as_u64().unwrap();
    }
    assert_eq!(total, 3 * 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn tombstones_are_collected_only_once_every_replica_holds_them() {
    // Tombstones are past their grace at once here; what holds them back is a replica away.
    let mut cluster = Cluster::start_with(
        6,
        1,
        &["--repair-delay", REPAIR_DELAY, "--tombstone-grace", "0"],
    )
    .unwrap();
    let c = dmpstore_tests::client_with_timeout(&cluster, 0, Duration::from_secs(20));
    c.create_bucket().bucket("tombs").send().await.unwrap();
    let data = |i: u64| dmpstore_tests::test_data(9_500 + i, 1_000);
    for i in 0..10 {
        dmpstore_tests::put_bytes(&c, "tombs", &format!("k{i:02}"), &data(i))
            .await
            .unwrap();
    }
    let replicas = partition_replicas(&cluster_map(&cluster), "tombs", 5);
    let idx = |n: NodeId| n.0 as usize - 1;
    let away = idx(replicas[0]);
    cluster.stop_node(away).unwrap();
    for i in 0..4 {
        c.delete_object()
            .bucket("tombs")
            .key(format!("k{i:02}"))
            .send()
            .await
            .unwrap();
    }
    // A full pass on every live node while one replica is away purges nothing.
    let mut last = status(&cluster);
    let passes = last["anti_entropy_passes"].as_u64().unwrap();
    // The stopped node cannot take the request: the command says so and fails.
    let refused = cluster.admin(&["anti-entropy"]).unwrap_err();
    assert!(
        format!("{refused:#}").contains(&format!("n{}:", away + 1)),
        "{refused:#}"
    );
    wait_for(Duration::from_secs(60), || {
        last = status(&cluster);
        last["anti_entropy_passes"].as_u64() >= Some(passes + 5)
    })
    .await
    .unwrap_or_else(|e| panic!("passes did not finish: {e}\n{last:#}"));
    assert_eq!(last["tombstones_purged"], 0, "{last:#}");
    // The replica returns with the deleted records; a pass gives it the tombstones, the next
    // one (every replica now holding them) purges them everywhere.
    cluster.restart_node(away).unwrap();
    last = wait_up(&cluster, &[away]).await;
    for _ in 0..2 {
        let passes = last["anti_entropy_passes"].as_u64().unwrap();
        cluster.admin(&["anti-entropy"]).unwrap();
        wait_for(Duration::from_secs(60), || {
            last = status(&cluster);
            last["anti_entropy_passes"].as_u64() >= Some(passes + 6)
        })
        .await
        .unwrap_or_else(|e| panic!("passes did not finish: {e}\n{last:#}"));
    }
    assert_eq!(last["tombstones_purged"], 4, "{last:#}");
    for i in 0..10u64 {
        let got = dmpstore_tests::get_bytes(&c, "tombs", &format!("k{i:02}")).await;
        match got {
            Ok(bytes) => assert!(i >= 4 && bytes == data(i), "k{i:02} is back"),
            Err(e) => assert!(i < 4, "k{i:02}: {e:#}"),
        }
    }
    // Every replica holds the 6 live records and nothing else.
    for &r in &replicas {
        cluster.stop_node(idx(r)).unwrap();
        let n = inspect_with(&cluster, idx(r), &["--partition", "tombs"])["partition_records"]
            .as_u64()
            .unwrap();
        assert_eq!(n, 6, "n{}", r.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_metadata_node_promotes_a_data_node_and_replicas_that_leave_start_empty() {
    let mut cluster = start(6);
    let c = dmpstore_tests::client_with_timeout(&cluster, 0, Duration::from_secs(20));
    let added = cluster.add_node().unwrap();
    let grown = cluster_map(&cluster);
    let n7 = NodeId(added as u32 + 1);
    let dead = NodeId(1);
    let after = grown
        .begin_metadata_change(
            grown
                .metadata_nodes()
                .iter()
                .copied()
                .filter(|n| *n != dead)
                .chain([n7])
                .collect(),
        )
        .unwrap()
        .finish_metadata_change(Some(dead))
        .unwrap();
    let sets = |p: &str| {
        (
            partition_replicas(&grown, p, 5),
            partition_replicas(&after, p, 5),
        )
    };
    // A bucket whose replicas lose n1 and gain n7 (its records must be copied to n7), and one
    // where n7 pushes out a replica that stays alive (that replica must drop its copy).
    let names: Vec<String> = (0..200).map(|i| format!("promo-{i}")).collect();
    let copied = names
        .iter()
        .find(|p| {
            let (a, b) = sets(p);
            a.contains(&dead) && b.contains(&n7)
        })
        .unwrap()
        .clone();
    let (displaced_bucket, displaced) = names
        .iter()
        .find_map(|p| {
            let (a, b) = sets(p);
            let out: Vec<NodeId> = a
                .iter()
                .copied()
                .filter(|n| !b.contains(n) && *n != dead)
                .collect();
            (!a.contains(&dead) && b.contains(&n7) && out.len() == 1).then(|| (p.clone(), out[0]))
        })
        .unwrap();
    let mut objects = Vec::new();
    for bucket in [&copied, &displaced_bucket] {
        c.create_bucket().bucket(bucket).send().await.unwrap();
        for i in 0..12u64 {
            let data = dmpstore_tests::test_data(6_600 + i, if i % 4 == 0 { 300_000 } else { 900 });
            let key = format!("o{i:02}");
            dmpstore_tests::put_bytes(&c, bucket, &key, &data)
                .await
                .unwrap();
            objects.push((bucket.clone(), key, data));
        }
    }
    cluster.kill_node(0).unwrap();
    let out = cluster
        .admin(&["remove", "--node", "1", "--timeout-secs", "300"])
        .unwrap_or_else(|e| panic!("remove failed: {e:#}\n{}", cluster.logs()));
    println!("{out}");
    assert!(out.contains("n7 takes n1's place"), "{out}");
    let s = status(&cluster);
    let n7_row = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == 7)
        .unwrap()
        .clone();
    assert_eq!(n7_row["metadata"], true, "{s:#}");
    for (bucket, key, data) in &objects {
        let got = dmpstore_tests::get_bytes(&c, bucket, key)
            .await
            .unwrap_or_else(|e| panic!("{bucket}/{key}: {e:#}"));
        assert!(&got == data, "{bucket}/{key} differs");
    }
    // The replica pushed out by n7 dropped its copy once the change was finished; n7 holds
    // both partitions.
    let idx = |n: NodeId| n.0 as usize - 1;
    cluster.stop_node(idx(displaced)).unwrap();
    let left = inspect_with(
        &cluster,
        idx(displaced),
        &["--partition", &displaced_bucket],
    );
    assert_eq!(left["partition_records"], 0, "n{}: {left}", displaced.0);
    cluster.stop_node(idx(n7)).unwrap();
    for bucket in [&copied, &displaced_bucket] {
        let n = inspect_with(&cluster, idx(n7), &["--partition", bucket])["partition_records"]
            .as_u64()
            .unwrap();
        assert_eq!(n, 12, "n7 holds {n} records of {bucket}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_k_plus_m_nodes_and_one_dead_status_counts_every_version_degraded() {
    // 6 nodes, RS(4,2): every erasure-coded version has a chunk on every node, so with one
    // dead there is no node to rebuild onto. Status must say that, not "healthy".
    let cluster = start(6);
    let c = dmpstore_tests::client_with_timeout(&cluster, 0, Duration::from_secs(20));
    c.create_bucket().bucket("full").send().await.unwrap();
    let sizes = [100_000usize, 300_000, 1_000_000, 3_000_000];
    let mut bytes = 0u64;
    for (i, size) in sizes.iter().cycle().take(12).enumerate() {
        let data = dmpstore_tests::test_data(9_000 + i as u64, *size);
        dmpstore_tests::put_bytes(&c, "full", &format!("o{i}"), &data)
            .await
            .unwrap();
        bytes += *size as u64;
    }
    // Small objects live inline in their records (no chunks): not counted.
    dmpstore_tests::put_bytes(&c, "full", "tiny", b"inline")
        .await
        .unwrap();
    let mut last = Value::Null;
    wait_for(Duration::from_secs(60), || {
        last = status(&cluster);
        last["degraded"]["fully_redundant"].as_bool() == Some(true)
    })
    .await
    .unwrap_or_else(|e| panic!("never fully redundant: {e}\n{last:#}"));

    let victim = 3;
    cluster.kill_node(victim).unwrap();
    // First only Down: the versions wait for the repair delay.
    wait_for(Duration::from_secs(30), || {
        last = status(&cluster);
        last["degraded"]["versions"].as_u64() == Some(12)
    })
    .await
    .unwrap_or_else(|e| panic!("degraded versions not counted: {e}\n{last:#}"));
    // Then dead past the delay, with no spare node: every version, every byte, one chunk.
    wait_for(Duration::from_secs(60), || {
        last = status(&cluster);
        let d = &last["degraded"];
        last["dead_agreed"] == serde_json::json!([victim + 1])
            && last["repair_idle"].as_bool() == Some(true)
            && d["by_reason"]["no spare node"].as_u64() == Some(12)
    })
    .await
    .unwrap_or_else(|e| panic!("not reported as short of a spare node: {e}\n{last:#}"));
    let d = &last["degraded"];
    assert_eq!(d["versions"].as_u64(), Some(12), "{last:#}");
    assert_eq!(d["bytes"].as_u64(), Some(bytes), "{last:#}");
    assert_eq!(d["by_missing"]["1"].as_u64(), Some(12), "{last:#}");
    assert!(
        last["last_t_fr_ms"].is_null(),
        "T_FR recorded with every version degraded:\n{last:#}"
    );
    // The failure is in the history, not restored (and no T_FR for it).
    let f = &last["failures"][0];
    assert_eq!(f["node"].as_u64(), Some(victim as u64 + 1), "{last:#}");
    assert!(f["t_fr_ms"].is_null() && f["rebuilt"] == true, "{last:#}");
    // P_FT says so too, and moves with the operator's failure rate as the model says.
    let loss = last["fault_tolerance"]["annual_loss"].as_f64().unwrap();
    assert!(
        (loss - loss_with_one_chunk_missing(5)).abs() < 1e-9,
        "{last:#}"
    );
    let doubled: Value = serde_json::from_str(
        &cluster
            .admin(&["status", "--json", "--annual-failure-rate", "0.1"])
            .unwrap(),
    )
    .unwrap();
    assert!(doubled["fault_tolerance"]["annual_loss"].as_f64().unwrap() > loss * 3.0);
    let text = cluster.admin(&["status"]).unwrap();
    assert!(
        text.contains("redundancy: DEGRADED, 12 object versions")
            && text.contains("12 no spare node")
            && text.contains("add a node")
            && text.contains("counted degraded for the whole year")
            && text.contains(&format!("n{} down", victim + 1))
            && text.contains("redundancy not restored yet"),
        "{text}"
    );
    println!("status of 6 nodes, RS(4,2), one killed:\n{text}");
    // The node metrics say the same, summed over the partition owners.
    let metrics: f64 = cluster
        .nodes()
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| {
            let text = cluster.node_metrics_at(&n.addr).unwrap_or_default();
            text.lines()
                .filter(|l| l.starts_with("dmpstore_degraded_versions{reason=\"no spare node\"}"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum();
    assert_eq!(metrics, 12.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unrepairable_version_is_parked_and_the_versions_behind_it_are_repaired() {
    let mut cluster = start(7);
    let c = dmpstore_tests::client_with_timeout(&cluster, 0, Duration::from_secs(20));
    c.create_bucket().bucket("park").send().await.unwrap();
    // One stripe of 4 data chunks of 256 KiB: corrupting three of them leaves 3 of the 6
    // chunks, fewer than k = 4. It sorts first in the repair queues ("a-" < "b-").
    let broken = dmpstore_tests::test_data(7_000, 1 << 20);
    dmpstore_tests::put_bytes(&c, "park", "a-broken", &broken)
        .await
        .unwrap();
    let mut others = Vec::new();
    for i in 0..6u64 {
        let data = dmpstore_tests::test_data(7_100 + i, 300_000);
        dmpstore_tests::put_bytes(&c, "park", &format!("b-{i}"), &data)
            .await
            .unwrap();
        others.push(data);
    }
    let markers: Vec<&[u8]> = (0..3usize)
        .map(|chunk| &broken[chunk * 262_144 + 5_000..][..64])
        .collect();
    let damaged: Vec<usize> = corrupt_on_disk(&mut cluster, &markers)
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(damaged.len(), 3, "three data chunks damaged: {damaged:?}");
    // A node with a damaged chunk dies: every version there needs a chunk rebuilt, and the
    // broken one cannot be.
    let victim = damaged[0];
    cluster.kill_node(victim).unwrap();
    let mut last = Value::Null;
    wait_for(Duration::from_secs(120), || {
        last = status(&cluster);
        last["parked_repairs"].as_u64() >= Some(1)
            && last["repair_idle"].as_bool() == Some(true)
            && last["degraded"]["versions"].as_u64() == Some(1)
            && last["dead_agreed"] == serde_json::json!([victim + 1])
    })
    .await
    .unwrap_or_else(|e| panic!("not parked, or the others not repaired: {e}\n{last:#}"));
    // Parked: the version, and the damaged chunks that reads found and could not heal.
    assert!(
        last["parked_first"].as_array().is_some_and(|p| p
            .iter()
            .any(|e| e[1].as_str().is_some_and(|k| k.ends_with("park/a-broken")))),
        "{last:#}"
    );
    let text = cluster.admin(&["status"]).unwrap();
    assert!(
        text.contains("cannot be done now") && text.contains("park/a-broken: stripe 0"),
        "{text}"
    );
    println!("{text}");
    // The versions behind it are whole again: readable with two more nodes gone.
    for (i, data) in others.iter().enumerate() {
        let got = dmpstore_tests::get_bytes(&c, "park", &format!("b-{i}"))
            .await
            .unwrap();
        assert!(got == *data, "b-{i} differs");
    }
}

/// An undecodable metadata record on one node (planted on disk) does not stop the scans of
/// its partition: listings through the gateway stay complete, the node's repair scan goes on,
/// and status names the record.
#[tokio::test(flavor = "multi_thread")]
async fn an_undecodable_record_is_skipped_and_named_while_scans_go_on() {
    let mut cluster = start(6);
    let c = dmpstore_tests::client_with_timeout(&cluster, 0, Duration::from_secs(20));
    c.create_bucket().bucket("rotten").send().await.unwrap();
    for i in 0..20u64 {
        let data = dmpstore_tests::test_data(8_000 + i, if i % 2 == 0 { 100 } else { 300_000 });
        dmpstore_tests::put_bytes(&c, "rotten", &format!("k{i:02}"), &data)
            .await
            .unwrap();
    }
    // Node 1 holds a replica of the partition unless it is the one node of six that does not.
    let victim = (0..6)
        .find(|&i| {
            cluster.stop_node(i).unwrap();
            let dir = std::path::PathBuf::from(cluster.node(i).data_dir.clone().unwrap());
            let planted = dmpstore_tests::plant_undecodable_record(&dir, "rotten", "k07").is_ok();
            cluster.restart_node(i).unwrap();
            planted
        })
        .expect("some node holds the record");
    for _ in 0..3 {
        let listed = c.list_objects_v2().bucket("rotten").send().await.unwrap();
        assert_eq!(listed.key_count(), Some(20), "a listing lost keys");
    }
    // Anti-entropy scans every replica of the partition: the victim's scan meets the record,
    // skips it, and the pass writes the good record back over it.
    cluster.admin(&["anti-entropy"]).unwrap();
    let mut last = Value::Null;
    wait_for(Duration::from_secs(60), || {
        last = status(&cluster);
        last["undecodable_records"].as_u64() >= Some(1)
    })
    .await
    .unwrap_or_else(|e| panic!("the undecodable record is not reported: {e}\n{last:#}"));
    assert!(
        last["undecodable_first"]
            .as_array()
            .is_some_and(|a| a
                .iter()
                .any(|e| e[0].as_u64() == Some(victim as u64 + 1)
                    && e[1].as_str() == Some("rotten/k07"))),
        "{last:#}"
    );
    let text = cluster.admin(&["status"]).unwrap();
    assert!(text.contains("rotten/k07"), "{text}");
    // Its record is still read right through the gateway (the other replicas have it).
    let got = dmpstore_tests::get_bytes(&c, "rotten", "k07")
        .await
        .unwrap();
    assert!(got == dmpstore_tests::test_data(8_007, 300_000));
}

/// A corrupt SST block on one node (planted on disk: the first data block of each of its
/// metadata SST files) does not stop its scans: listings through the gateway stay complete,
/// anti-entropy passes finish, and status names the unreadable range and its file.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_sst_block_is_skipped_and_named_while_scans_go_on() {
    let mut cluster = start(6);
    let c = dmpstore_tests::client_with_timeout(&cluster, 0, Duration::from_secs(20));
    c.create_bucket().bucket("sst").send().await.unwrap();
    for i in 0..20u64 {
        let data = dmpstore_tests::test_data(9_000 + i, 1000);
        dmpstore_tests::put_bytes(&c, "sst", &format!("k{i:02}"), &data)
            .await
            .unwrap();
    }
    cluster.stop_node(0).unwrap();
    let dir = std::path::PathBuf::from(cluster.node(0).data_dir.clone().unwrap());
    let damaged = dmpstore_tests::corrupt_sst_blocks(&dir, "meta").unwrap();
    assert!(!damaged.is_empty(), "node 1 has metadata SST files");
    cluster.restart_node(0).unwrap();
    for _ in 0..3 {
        let listed = c.list_objects_v2().bucket("sst").send().await.unwrap();
        assert_eq!(listed.key_count(), Some(20), "a listing lost keys");
    }
    let passes_before = status(&cluster)["anti_entropy_passes"].as_u64().unwrap();
    cluster.admin(&["anti-entropy"]).unwrap();
    let mut last = Value::Null;
    wait_for(Duration::from_secs(60), || {
        last = status(&cluster);
        last["undecodable_records"].as_u64() >= Some(1)
            && last["anti_entropy_passes"].as_u64() > Some(passes_before)
    })
    .await
    .unwrap_or_else(|e| {
        panic!("the corrupt block is not reported, or scans stalled: {e}\n{last:#}")
    });
    let named = last["undecodable_first"].as_array().is_some_and(|a| {
        a.iter().any(|e| {
            e[0].as_u64() == Some(1)
                && damaged
                    .iter()
                    .any(|f| e[1].as_str().is_some_and(|s| s.contains(f.as_str())))
        })
    });
    assert!(
        named,
        "status does not name a damaged file {damaged:?}:\n{last:#}"
    );
    let text = cluster.admin(&["status"]).unwrap();
    assert!(text.contains(&damaged[0]), "{text}");
    for i in 0..20u64 {
        let got = dmpstore_tests::get_bytes(&c, "sst", &format!("k{i:02}"))
            .await
            .unwrap();
        assert!(
            got == dmpstore_tests::test_data(9_000 + i, 1000),
            "k{i:02} differs"
        );
    }
}
