//! Node failures against real processes: `kill -9` of storage nodes before and during writes.
//! Every acknowledged object must stay readable, byte for byte (DESIGN 7-9).

use dmpstore_tests::{get_bytes, put_bytes, test_data, Cluster};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Sizes that cover inline records, single short stripes, and many full stripes.
const SIZES: [usize; 6] = [
    0,
    700,
    16 * 1024 + 1,
    300 * 1024,
    1024 * 1024,
    3 * 1024 * 1024 + 17,
];

async fn write_set(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    tag: &str,
    seed_base: u64,
) -> BTreeMap<String, u64> {
    let mut written = BTreeMap::new();
    for (i, size) in SIZES.iter().enumerate() {
        let key = format!("{tag}/obj-{i}");
        let seed = seed_base + i as u64;
        put_bytes(c, bucket, &key, &test_data(seed, *size))
            .await
            .unwrap();
        written.insert(key, seed * 1_000_000_000 + *size as u64);
    }
    written
}

async fn check_all(
    c: &aws_sdk_s3::Client,
    bucket: &str,
    written: &BTreeMap<String, u64>,
    when: &str,
) {
    for (key, code) in written {
        let (seed, size) = (code / 1_000_000_000, (code % 1_000_000_000) as usize);
        let got = get_bytes(c, bucket, key)
            .await
            .unwrap_or_else(|e| panic!("{when}: {key}: {e:?}"));
        assert!(
            got == test_data(seed, size),
            "{when}: {key} differs ({} bytes read, {size} written)",
            got.len()
        );
    }
    let listed = c.list_objects_v2().bucket(bucket).send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    for key in written.keys() {
        assert!(
            keys.contains(&key.as_str()),
            "{when}: {key} missing from LIST"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn any_two_nodes_killed_leave_every_object_readable() {
    let mut cluster = Cluster::start(6, 1).unwrap();
    let c = cluster.client(0);
    c.create_bucket().bucket("fault").send().await.unwrap();
    let written = write_set(&c, "fault", "before", 1).await;
    // Three different pairs, so data chunks, parity chunks and metadata replicas all get hit.
    for (x, y) in [(0, 1), (2, 5), (3, 4)] {
        cluster.kill_node(x).unwrap();
        cluster.kill_node(y).unwrap();
        check_all(&c, "fault", &written, &format!("nodes {x} and {y} down")).await;
        cluster.restart_node(x).unwrap();
        cluster.restart_node(y).unwrap();
    }
    check_all(&c, "fault", &written, "after restarts").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_one_node_down_puts_succeed_and_survive_a_second_failure() {
    let mut cluster = Cluster::start(6, 1).unwrap();
    let c = cluster.client(0);
    c.create_bucket().bucket("fault").send().await.unwrap();
    let before = write_set(&c, "fault", "before", 100).await;
    cluster.kill_node(2).unwrap();
    // Five nodes for six chunks: stripes are accepted at k + 1 chunks (DESIGN 8).
    let during = write_set(&c, "fault", "during", 200).await;
    cluster.kill_node(4).unwrap();
    check_all(&c, "fault", &before, "two down").await;
    check_all(&c, "fault", &during, "two down").await;
    cluster.restart_node(2).unwrap();
    cluster.restart_node(4).unwrap();
    check_all(&c, "fault", &before, "after restart").await;
    check_all(&c, "fault", &during, "after restart").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_down_node_is_substituted_so_new_objects_are_fully_redundant() {
    // Seven nodes: with one down there are still k + m = 6 to place on, so every new object
    // must get all six chunks, and then survive two more failures.
    let cluster = Cluster::start(7, 1).unwrap();
    let c = cluster.client(0);
    c.create_bucket().bucket("fault").send().await.unwrap();
    cluster.kill_node(6).unwrap();
    let during = write_set(&c, "fault", "during", 300).await;
    cluster.kill_node(0).unwrap();
    cluster.kill_node(3).unwrap();
    check_all(&c, "fault", &during, "three down (one before the writes)").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_in_a_stream_of_puts_loses_no_acknowledged_object() {
    let mut cluster = Cluster::start(6, 2).unwrap();
    c_setup(&cluster).await;
    let acked: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let c = cluster.client((w % 2) as usize);
        let (acked, stop) = (acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut failures = 0;
            for i in 0..400u64 {
                if stop.load(Ordering::Relaxed) && i > 0 {
                    break;
                }
                let size =
                    [900usize, 200 * 1024, 1024 * 1024 + 3, 2 * 1024 * 1024][(i % 4) as usize];
                let seed = w * 10_000 + i;
                let key = format!("w{w}/{i}");
                match put_bytes(&c, "stream", &key, &test_data(seed, size)).await {
                    Ok(_) => {
                        acked
                            .lock()
                            .unwrap()
                            .insert(key, seed * 1_000_000_000 + size as u64);
                    }
                    Err(_) => failures += 1,
                }
            }
            failures
        }));
    }
    // Kill a node once writes are flowing, let writes continue, then stop them.
    dmpstore_tests::wait_until(std::time::Duration::from_secs(120), || {
        acked.lock().unwrap().len() >= 20
    })
    .unwrap();
    cluster.kill_node(1).unwrap();
    let at_kill = acked.lock().unwrap().len();
    dmpstore_tests::wait_until(std::time::Duration::from_secs(120), || {
        acked.lock().unwrap().len() >= at_kill + 30
    })
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut failures = 0;
    for w in writers {
        failures += w.await.unwrap();
    }
    cluster.restart_node(1).unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= at_kill + 30);
    let c = cluster.client(1);
    check_all(&c, "stream", &acked, "after kill and restart").await;
    eprintln!(
        "{} acknowledged objects intact; {failures} PUTs failed around the kill",
        acked.len()
    );
}

async fn c_setup(cluster: &Cluster) {
    cluster
        .client(0)
        .create_bucket()
        .bucket("stream")
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_node_is_routed_around_once_the_gateway_marks_it_down() {
    let cluster = Cluster::start(6, 1).unwrap();
    let c = cluster.client(0);
    c.create_bucket().bucket("hung").send().await.unwrap();
    let written = write_set(&c, "hung", "before", 400).await;
    // Only a line written after the pause, naming this node, counts: under load the gateway
    // may have marked a node down (and up again) while the cluster was starting.
    let log_before = cluster.gateway_log(0).len();
    let marked_down = format!("node marked down node={}", cluster.node(3).id);
    cluster.pause_node(3).unwrap();
    dmpstore_tests::wait_until(std::time::Duration::from_secs(30), || {
        cluster.gateway_log(0)[log_before..]
            .lines()
            .any(|l| l.ends_with(&marked_down))
    })
    .unwrap();
    // A hung node would hold a read for the 10 s RPC deadline; this client gives up after 5 s.
    let impatient =
        dmpstore_tests::client_with_timeout(&cluster, 0, std::time::Duration::from_secs(5));
    check_all(&impatient, "hung", &written, "one node hung").await;
    cluster.resume_node(3).unwrap();
    check_all(&c, "hung", &written, "after the node resumed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_background_worker_is_restarted_and_counted() {
    let mut cluster = Cluster::start_with(6, 1, &["--repair-delay", "2"]).unwrap();
    // Node 3's failure detector panics at its first start (a test-only fault point).
    cluster.stop_node(2).unwrap();
    cluster
        .restart_node_with_env(2, &[("DMPSTORE_FAULT_PANIC_WORKER", "detector")])
        .unwrap();
    let mut last = serde_json::Value::Null;
    dmpstore_tests::workload::wait_for(std::time::Duration::from_secs(30), || {
        last = cluster.admin_status().unwrap();
        last["nodes"][2]["restarted_workers"][0]["name"] == "detector"
    })
    .await
    .unwrap_or_else(|e| panic!("no restart reported: {e}\n{last:#}"));
    assert_eq!(last["nodes"][2]["restarted_workers"][0]["restarts"], 1);
    let text = cluster.admin(&["status"]).unwrap();
    assert!(
        text.contains("workers: n3 detector panicked and was restarted 1 times"),
        "{text}"
    );
    // The restarted detector works: node 3 sees node 5 go Down.
    cluster.kill_node(4).unwrap();
    let metrics = cluster.node(2).addr.clone();
    let mut text = String::new();
    dmpstore_tests::workload::wait_for(std::time::Duration::from_secs(30), || {
        text = cluster.node_metrics_at(&metrics).unwrap_or_default();
        text.contains("dmpstore_peer_state{peer=\"n5\",state=\"down\"} 1")
    })
    .await
    .unwrap_or_else(|e| panic!("node 3 never saw node 5 down: {e}\n{text}"));
    assert!(
        text.contains("dmpstore_worker_restarts_total{worker=\"detector\"} 1"),
        "{text}"
    );
}

/// P_HA (DESIGN 17): requests a gateway answers with a server-side error count against its
/// measured availability, on its `/metrics` at once and in `gateway admin status` (the
/// cluster's and each gateway's) once its next report reached the nodes.
#[tokio::test(flavor = "multi_thread")]
async fn requests_failed_by_the_server_lower_the_measured_availability() {
    let cluster = Cluster::start(6, 1).unwrap();
    let c = client_with_bucket(&cluster, "avail", 20).await;
    for i in 0..20 {
        put_bytes(&c, "avail", &format!("ok-{i}"), b"served")
            .await
            .unwrap();
    }
    let metrics_url = format!("{}/metrics", cluster.info.s3_endpoints[0]);
    let availability = |window: &str| {
        let text = dmpstore_tests::http_get_text(&metrics_url).unwrap();
        dmpstore_tests::metric_sum(
            &text,
            &format!("dmpstore_gateway_availability{{window=\"{window}\"}}"),
        )
    };
    assert_eq!(availability("1h"), 1.0);
    // Four of six nodes down: no metadata quorum, so every write is answered 503.
    for idx in 0..4 {
        cluster.kill_node(idx).unwrap();
    }
    for i in 0..10 {
        let put = put_bytes(&c, "avail", &format!("refused-{i}"), b"refused").await;
        assert!(put.is_err(), "a PUT succeeded without a metadata quorum");
    }
    // 1 CreateBucket + 20 PUTs served, 10 failed.
    let expected = 21.0 / 31.0;
    assert!((availability("1h") - expected).abs() < 1e-9);
    assert!((availability("1d") - expected).abs() < 1e-9);
    let mut last = serde_json::Value::Null;
    dmpstore_tests::wait_until(std::time::Duration::from_secs(60), || {
        last = cluster.admin_status().unwrap_or_default();
        last["availability"]["last_hour"]["failed"].as_u64() == Some(10)
    })
    .unwrap_or_else(|e| panic!("status does not show the failed requests: {e}\n{last:#}"));
    let a = &last["availability"];
    assert_eq!(a["last_hour"]["requests"].as_u64(), Some(31), "{last:#}");
    assert!((a["last_day"]["availability"].as_f64().unwrap() - expected).abs() < 1e-9);
    assert_eq!(a["gateways"].as_array().map(Vec::len), Some(1), "{last:#}");
    let text = cluster.admin(&["status"]).unwrap();
    assert!(text.contains("last hour 67.742 % of 31 requests"), "{text}");
    println!("{text}");
}

/// A stopped (SIGSTOP) metadata replica does not hold conditional writes up: their leases are
/// decided by the first majority to answer, not after the stopped node's RPC deadline (10 s,
/// twice the client's timeout here). Before, every If-None-Match PUT timed out.
#[tokio::test(flavor = "multi_thread")]
async fn conditional_writes_do_not_wait_for_a_stopped_replica() {
    let cluster = Cluster::start(6, 1).unwrap();
    let c = client_with_bucket(&cluster, "cond", 5).await;
    // Five of six nodes hold each partition: with two stopped, at least one replica is.
    cluster.pause_node(0).unwrap();
    cluster.pause_node(1).unwrap();
    for i in 0..5 {
        let key = format!("created-{i}");
        let put = c
            .put_object()
            .bucket("cond")
            .key(&key)
            .if_none_match("*")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"once"))
            .send()
            .await;
        assert!(put.is_ok(), "{key}: {put:?}");
        let again = c
            .put_object()
            .bucket("cond")
            .key(&key)
            .if_none_match("*")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"twice"))
            .send()
            .await;
        let status = again
            .err()
            .and_then(|e| e.raw_response().map(|r| r.status().as_u16()));
        assert_eq!(status, Some(412), "{key}: a second create must be refused");
    }
    cluster.resume_node(0).unwrap();
    cluster.resume_node(1).unwrap();
    assert_eq!(
        get_bytes(&c, "cond", "created-4").await.unwrap(),
        b"once".to_vec()
    );
}

/// A read whose data chunks sit on a node that just hung (SIGSTOP), before anything marked
/// it Down, fetches parity after a short hedge instead of waiting for the RPC deadline (10 s,
/// twice the client's timeout here) (DESIGN 9).
#[tokio::test(flavor = "multi_thread")]
async fn reads_go_around_a_hung_node_without_waiting_for_its_deadline() {
    let cluster = Cluster::start(6, 1).unwrap();
    let c = client_with_bucket(&cluster, "hedge", 5).await;
    // Six objects of one full stripe: every node holds a chunk of each, a data chunk of most.
    let mut written = Vec::new();
    for i in 0..6u64 {
        let data = test_data(900 + i, 1024 * 1024);
        put_bytes(&c, "hedge", &format!("o{i}"), &data)
            .await
            .unwrap();
        written.push(data);
    }
    cluster.pause_node(2).unwrap();
    let reads = written.iter().enumerate().map(|(i, data)| {
        let c = c.clone();
        async move {
            let got = get_bytes(&c, "hedge", &format!("o{i}")).await;
            (i, got.map(|g| g == *data))
        }
    });
    let results = futures::future::join_all(reads).await;
    cluster.resume_node(2).unwrap();
    for (i, r) in results {
        assert!(matches!(r, Ok(true)), "o{i} with node 3 hung: {r:?}");
    }
}

/// A client of the cluster's first gateway that sends each request once, bounded by
/// `timeout_secs`, and the bucket it works in.
async fn client_with_bucket(
    cluster: &Cluster,
    bucket: &str,
    timeout_secs: u64,
) -> aws_sdk_s3::Client {
    let c = dmpstore_tests::single_attempt_client_for(
        &cluster.info,
        0,
        std::time::Duration::from_secs(timeout_secs),
    );
    c.create_bucket().bucket(bucket).send().await.unwrap();
    c
}

/// A full disk is a state, not a flap (issue 9): node 3's data lives on a small tmpfs that is
/// filled to the brim. The node turns read-only and says so in status and metrics; gateways
/// place no chunks on it while writes go on, fully acknowledged; everything stays readable;
/// once the filler is deleted the node takes new chunks again by itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_turns_its_node_read_only_until_space_is_freed() {
    // RocksDB preallocates about 70 MiB for its write-ahead log.
    let disk = SmallDisk::mount(128).unwrap();
    let mut cluster = Cluster::start(7, 1).unwrap();
    move_node_to(&mut cluster, 2, disk.path(), 8 << 20);
    let c = client_with_bucket(&cluster, "full", 30).await;
    let mut written = write_set(&c, "full", "before", 1).await;
    let puts_ok = "dmpstore_node_rpc_requests_total{outcome=\"ok\",rpc=\"put_chunk\"}";
    let n3_puts = || {
        let text = cluster.node_metrics_at(&cluster.node(2).addr);
        dmpstore_tests::metric_sum(&text.unwrap_or_default(), puts_ok)
    };
    assert!(n3_puts() > 0.0, "node 3 took chunks before its disk filled");

    let filler = disk.path().join("filler");
    let filled = fill_to_the_brim(&filler);
    assert!(filled > 0, "the filler took the disk's free space");
    wait_read_only(&cluster, true).await;
    let text = cluster.admin(&["status"]).unwrap();
    assert!(text.contains("n3 is read-only: its disk is full"), "{text}");
    assert!(text.contains(" read-only "), "{text}");
    let before = n3_puts();
    written.extend(write_set(&c, "full", "while-full", 100).await);
    assert_eq!(n3_puts(), before, "no chunk was placed on the full node");
    check_all(&c, "full", &written, "with node 3's disk full").await;

    std::fs::remove_file(&filler).unwrap();
    wait_read_only(&cluster, false).await;
    written.extend(write_set(&c, "full", "after", 200).await);
    assert!(
        n3_puts() > before,
        "node 3 takes chunks again once space is freed"
    );
    check_all(&c, "full", &written, "after space was freed").await;
    let log = cluster.node_log(2);
    assert!(log.contains("disk full: the node is read-only"), "{log}");
    assert!(log.contains("disk space is back"), "{log}");
}

/// Waits until status and the gateway's metrics both show node 3 read-only (or both show
/// it writable).
async fn wait_read_only(cluster: &Cluster, read_only: bool) {
    let gateway_metrics = format!("{}/metrics", cluster.info.s3_endpoints[0]);
    let wanted = format!(
        "dmpstore_gateway_node_read_only{{node=\"n3\"}} {}",
        u8::from(read_only)
    );
    let mut last = serde_json::Value::Null;
    dmpstore_tests::workload::wait_for(std::time::Duration::from_secs(30), || {
        last = cluster.admin_status().unwrap_or_default();
        last["nodes"][2]["disk"]["read_only"] == read_only
            && dmpstore_tests::http_get_text(&gateway_metrics).is_ok_and(|t| t.contains(&wanted))
    })
    .await
    .unwrap_or_else(|e| panic!("node 3 read_only never became {read_only}: {e}\n{last:#}"));
}

/// Writes zeros to `path` until its file system has no room left; returns the bytes written.
fn fill_to_the_brim(path: &std::path::Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let mut written = 0u64;
    for block in [1 << 20, 4096] {
        let zeros = vec![0u8; block];
        while let Ok(n) = f.write(&zeros) {
            if n == 0 {
                break;
            }
            written += n as u64;
        }
    }
    written
}

/// Stops node `idx`, moves its data directory to `dir`, and starts it again keeping
/// `min_free_bytes` free there.
fn move_node_to(cluster: &mut Cluster, idx: usize, dir: &std::path::Path, min_free_bytes: u64) {
    cluster.stop_node(idx).unwrap();
    let old = cluster.node(idx).data_dir.clone().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{old}/."))
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "copy node data to {}", dir.display());
    let config = cluster.node(idx).config.clone();
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        &format!("data_dir = \"{old}\""),
        &format!("data_dir = \"{}\"", dir.display()),
    );
    std::fs::write(
        &config,
        format!("min_free_bytes = {min_free_bytes}\n{text}"),
    )
    .unwrap();
    cluster.restart_node(idx).unwrap();
}

/// A tmpfs of a few MiB, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size_mib: u64) -> anyhow::Result<SmallDisk> {
        let dir = tempfile::Builder::new()
            .prefix("dmpstore-disk-")
            .tempdir()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()?;
        anyhow::ensure!(status.success(), "mount a tmpfs (the test needs root)");
        Ok(SmallDisk { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Heartbeats never wait behind storage I/O (issue 9): node 3's storage requests are made to
/// queue (a test-only fault point runs them one at a time, 300 ms each) under a stream of
/// writes, so they wait seconds; with heartbeats every 200 ms and Down after 1.5 s of silence,
/// no peer may declare it Down meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_storage_pool_is_saturated_is_not_declared_down() {
    let mut cluster = Cluster::start_with(6, 1, &["--repair-delay", "60"]).unwrap();
    cluster.stop_node(2).unwrap();
    cluster
        .restart_node_with_env(2, &[("DMPSTORE_FAULT_STALL_STORE_MS", "300")])
        .unwrap();
    let c = client_with_bucket(&cluster, "busy", 60).await;
    let n3_down = "dmpstore_peer_state{peer=\"n3\",state=\"down\"} 1";
    let peers_metrics: Vec<String> = (0..6)
        .filter(|&i| i != 2)
        .map(|i| cluster.node(i).addr.clone())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..12)
        .map(|w| {
            let (c, stop) = (c.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let body = test_data(w * 1000 + i, 64 * 1024);
                    let _ = put_bytes(&c, "busy", &format!("w{w}/{i}"), &body).await;
                    i += 1;
                }
            })
        })
        .collect();
    // Watch the peers' views until a few of node 3's chunk writes have waited past 2.5 s.
    let slowest = "dmpstore_node_rpc_duration_seconds_bucket{le=\"2.5\",rpc=\"put_chunk\"}";
    let n3_metrics = cluster.node(2).addr.clone();
    let mut declared_down = std::collections::BTreeSet::new();
    let mut text = String::new();
    let count = "dmpstore_node_rpc_duration_seconds_count{rpc=\"put_chunk\"}";
    let saturated = dmpstore_tests::workload::wait_for(std::time::Duration::from_secs(60), || {
        for url in &peers_metrics {
            if cluster
                .node_metrics_at(url)
                .is_ok_and(|t| t.contains(n3_down))
            {
                declared_down.insert(url.clone());
            }
        }
        text = cluster.node_metrics_at(&n3_metrics).unwrap_or_default();
        // Some chunk writes took longer than 2.5 s: the pool was saturated.
        dmpstore_tests::metric_sum(&text, count) > dmpstore_tests::metric_sum(&text, slowest) + 2.0
    })
    .await
    .is_ok();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    assert!(
        saturated,
        "node 3's chunk writes never waited past 2.5 s:\n{text}"
    );
    assert!(
        declared_down.is_empty(),
        "node 3 declared down by {declared_down:?}"
    );
    let status = cluster.admin_status().unwrap();
    assert_eq!(status["failures"], serde_json::json!([]), "{status:#}");
}
