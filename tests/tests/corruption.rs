//! A chunk corrupted on disk is detected on read (checksums verified by the node), the GET
//! still returns the right bytes, rebuilt from the other chunks, and the node rebuilds the
//! chunk in place from its siblings, so later reads take the fast path again.

use dmpstore_tests::{corrupt_in_blob_files, get_bytes, put_bytes, test_data, Cluster};
use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_chunk_is_detected_and_the_get_still_returns_the_right_bytes() {
    let mut cluster = Cluster::start(6, 1).unwrap();
    let c = cluster.client(0);
    c.create_bucket().bucket("scrub").send().await.unwrap();
    let data = test_data(42, 1024 * 1024 + 1);
    put_bytes(&c, "scrub", "victim", &data).await.unwrap();

    // Stop every node cleanly so chunk bytes sit in blob files, then damage the data chunk
    // holding bytes 1000..1064 of the object (chunk 0 of stripe 0) wherever it is stored.
    for i in 0..6 {
        cluster.stop_node(i).unwrap();
    }
    let marker = &data[1000..1064];
    let mut damaged_nodes = Vec::new();
    for i in 0..6 {
        let dir = PathBuf::from(cluster.node(i).data_dir.clone().unwrap());
        let n = corrupt_in_blob_files(&dir, marker);
        if n > 0 {
            damaged_nodes.push(i);
        }
    }
    assert_eq!(
        damaged_nodes.len(),
        1,
        "chunk 0 should be stored on exactly one node"
    );
    for i in 0..6 {
        cluster.restart_node(i).unwrap();
    }
    // Read only once the gateway sends work to every node again (its /metrics says so), so
    // the read asks the damaged node rather than routing around it.
    let metrics_url = format!("{}/metrics", cluster.info.s3_endpoints[0]);
    dmpstore_tests::wait_until(std::time::Duration::from_secs(60), || {
        dmpstore_tests::http_get_text(&metrics_url)
            .is_ok_and(|m| dmpstore_tests::metric_sum(&m, "dmpstore_gateway_node_up") == 6.0)
    })
    .unwrap();

    let got = get_bytes(&c, "scrub", "victim").await.unwrap();
    assert!(got == data, "GET returned wrong bytes after corruption");
    let ranged = c
        .get_object()
        .bucket("scrub")
        .key("victim")
        .range("bytes=1000-1063")
        .send()
        .await
        .unwrap();
    assert_eq!(
        &ranged.body.collect().await.unwrap().into_bytes()[..],
        marker
    );
    let log = cluster.node_log(damaged_nodes[0]);
    assert!(
        log.contains("corrupt data detected"),
        "the node did not report the corruption:\n{log}"
    );

    // The read queued the chunk for healing on its node. Once rebuilt it counts again: with
    // two other nodes gone (each holding one chunk of every stripe), stripe 0 would have only 3
    // of the 4 chunks it needs if chunk 0 were still corrupt.
    dmpstore_tests::wait_until(std::time::Duration::from_secs(60), || {
        cluster
            .node_log(damaged_nodes[0])
            .contains("corrupt chunk rebuilt in place from its siblings")
    })
    .unwrap();
    let victims: Vec<usize> = (0..6).filter(|&i| i != damaged_nodes[0]).take(2).collect();
    for &v in &victims {
        cluster.kill_node(v).unwrap();
    }
    let got = get_bytes(&c, "scrub", "victim").await.unwrap();
    assert!(got == data, "GET after healing returned wrong bytes");
}
