//! Liveness and readiness probes through real processes: a gateway's `/health/ready` on its
//! S3 port and every node's on its health listener say 200 while at most `m` nodes are down,
//! 503 with the reason once more are, and 200 again when a node returns; `/health/live`
//! stays 200 throughout.

use dmpstore_tests::workload::wait_for;
use dmpstore_tests::Cluster;
use std::io::{Read, Write};
use std::time::Duration;

/// `GET path` at `addr` (plain HTTP): the status code and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut conn) = std::net::TcpStream::connect(addr) else {
        return (0, "connection refused".into());
    };
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    if conn.write_all(head.as_bytes()).is_err() {
        return (0, "write failed".into());
    }
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

fn gateway_addr(cluster: &Cluster) -> String {
    cluster.info.s3_endpoints[0]
        .trim_start_matches("http://")
        .to_string()
}

fn health_addr(cluster: &Cluster, idx: usize) -> String {
    cluster
        .node(idx)
        .health_addr
        .clone()
        .expect("nodes have a health listener")
}

#[tokio::test]
async fn readiness_follows_how_many_nodes_are_up() {
    let mut cluster = Cluster::start_with(6, 1, &["--repair-delay", "3600"]).unwrap();
    let gateway = gateway_addr(&cluster);
    let deadline = Duration::from_secs(30);
    let ready = |addr: &str| get(addr, "/health/ready").0 == 200;

    wait_for(deadline, || {
        ready(&gateway) && (0..6).all(|i| ready(&health_addr(&cluster, i)))
    })
    .await
    .expect("a started cluster becomes ready");
    assert_eq!(get(&gateway, "/health/live"), (200, "live\n".into()));
    assert_eq!(get(&health_addr(&cluster, 0), "/health/live").0, 200);
    // The health listener serves nothing else; the S3 port answers S3 for other paths.
    assert_eq!(get(&health_addr(&cluster, 0), "/metrics").0, 404);
    let (status, body) = get(&gateway, "/health/ready?x=1");
    assert!(status >= 400 && body.contains("<Error>"), "{status} {body}");

    // m = 2 nodes down: still ready.
    cluster.kill_node(0).unwrap();
    cluster.kill_node(1).unwrap();
    wait_for(deadline, || {
        let text = cluster
            .node_metrics_at(&cluster.node(2).addr)
            .unwrap_or_default();
        text.contains("dmpstore_peer_state{peer=\"n1\",state=\"down\"} 1")
            && text.contains("dmpstore_peer_state{peer=\"n2\",state=\"down\"} 1")
    })
    .await
    .unwrap();
    assert!(ready(&gateway), "{:?}", get(&gateway, "/health/ready"));
    assert!(ready(&health_addr(&cluster, 2)));

    // A third: not ready, saying why; still live.
    cluster.kill_node(2).unwrap();
    wait_for(deadline, || {
        get(&gateway, "/health/ready")
            == (
                503,
                "not ready: 3 of 6 storage nodes reachable, 4 needed\n".into(),
            )
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", get(&gateway, "/health/ready")));
    wait_for(deadline, || {
        get(&health_addr(&cluster, 3), "/health/ready").0 == 503
    })
    .await
    .unwrap();
    assert_eq!(get(&gateway, "/health/live").0, 200);
    assert_eq!(get(&health_addr(&cluster, 3), "/health/live").0, 200);

    // One back: ready again everywhere that is up.
    cluster.restart_node(2).unwrap();
    wait_for(deadline, || {
        ready(&gateway) && (2..6).all(|i| ready(&health_addr(&cluster, i)))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", get(&gateway, "/health/ready")));
}
