//! A chunk corrupted on disk is detected on read (checksums verified by the node) and the GET
//! still returns the right bytes, rebuilt from the other chunks.

use dmpstore_tests::{get_bytes, put_bytes, test_data, Cluster};
use std::path::{Path, PathBuf};

fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(files_with_extension(&p, ext));
        } else if p.extension().is_some_and(|e| e == ext) {
            out.push(p);
        }
    }
    out
}

/// Flips one byte inside every occurrence of `marker` in `file`; returns how many it changed.
fn corrupt(file: &Path, marker: &[u8]) -> usize {
    let mut bytes = std::fs::read(file).unwrap();
    let hits: Vec<usize> = bytes
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker)
        .map(|(i, _)| i)
        .collect();
    for &i in &hits {
        bytes[i + marker.len() / 2] ^= 0xFF;
    }
    if !hits.is_empty() {
        std::fs::write(file, bytes).unwrap();
    }
    hits.len()
}

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
        let n: usize = files_with_extension(&dir, "blob")
            .iter()
            .map(|f| corrupt(f, marker))
            .sum();
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
}
