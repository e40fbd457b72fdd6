//! The client matrix: aws cli (s3 and s3api, sync, multipart thresholds), boto3, rclone and
//! s3cmd against a multi-process cluster, and virtual-hosted-style requests, through
//! `tests/clients/matrix.py`, all over HTTPS with the cluster's test CA as the only trusted
//! root (plain HTTP is what every other test uses). The Rust SDK is exercised by the other
//! test files with its default settings (CRC32 checksums included).

use dmpstore_tests::workload::wait_for;
use dmpstore_tests::{
    get_bytes, pem_certificate_sha256, put_bytes, repo_root, served_certificate_sha256, Cluster,
};
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn aws_cli_boto3_rclone_and_s3cmd_work_unmodified() {
    let cluster = Cluster::start_with(6, 2, &["--tls"]).unwrap();
    assert!(cluster.info.s3_endpoints[0].starts_with("https://"));
    assert!(cluster.info.ca_bundle.is_some());
    let out = Command::new("python3")
        .arg(repo_root().join("tests/clients/matrix.py"))
        .arg(cluster.dir.path().join("cluster.json"))
        .output()
        .expect("run python3 tests/clients/matrix.py (scripts/setup.sh installs the clients)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "client matrix failed:\n{stdout}\n{}",
        cluster.logs()
    );
    for client in ["awscli", "boto3", "rclone", "s3cmd", "virtual-host"] {
        assert!(
            stdout.contains(&format!("PASS {client}")),
            "{client} did not pass"
        );
    }
    certificate_renewed_on_disk_is_served_without_restart(&cluster).await;
}

/// The gateways re-read their certificate when its files change: a renewed one is served by
/// the running processes (same pids), and a broken one is refused while the previous stays in
/// service.
async fn certificate_renewed_on_disk_is_served_without_restart(cluster: &Cluster) {
    let gateways: Vec<String> = cluster
        .info
        .processes
        .iter()
        .filter(|p| p.role == "gateway")
        .map(|p| p.addr.clone())
        .collect();
    let cert = cluster.dir.path().join("tls/server.pem");
    let key = cluster.dir.path().join("tls/server.key");
    let old = pem_certificate_sha256(&cert).unwrap();
    for addr in &gateways {
        assert_eq!(served_certificate_sha256(addr).unwrap(), old);
    }
    let client = cluster.client(0);
    client
        .create_bucket()
        .bucket("rotation")
        .send()
        .await
        .unwrap();

    // A key file that no longer parses: refused, the old pair stays in service.
    let good_key = std::fs::read(&key).unwrap();
    std::fs::write(&key, b"-----BEGIN PRIVATE KEY-----\nbroken\n").unwrap();
    wait_for(Duration::from_secs(30), || {
        cluster
            .gateway_log(0)
            .contains("TLS certificate not reloaded")
    })
    .await
    .expect("the broken key is noticed and refused");
    assert_eq!(served_certificate_sha256(&gateways[0]).unwrap(), old);
    put_bytes(&client, "rotation", "during", b"still served")
        .await
        .unwrap();
    std::fs::write(&key, good_key).unwrap();

    let renewed = cluster.renew_tls_certificate().unwrap();
    let new = pem_certificate_sha256(&renewed).unwrap();
    assert_ne!(new, old);
    for addr in &gateways {
        wait_for(Duration::from_secs(30), || {
            served_certificate_sha256(addr).is_ok_and(|served| served == new)
        })
        .await
        .unwrap_or_else(|e| panic!("{addr} does not serve the renewed certificate: {e}"));
    }
    let after = cluster.client(0);
    put_bytes(&after, "rotation", "after", b"new certificate")
        .await
        .unwrap();
    assert_eq!(
        get_bytes(&after, "rotation", "during").await.unwrap(),
        b"still served"
    );
    for idx in 0..gateways.len() {
        let log = cluster.gateway_log(idx);
        assert!(log.contains("TLS certificate reloaded"), "gateway {idx}");
        assert_eq!(
            log.matches("gateway serving S3").count(),
            1,
            "gateway {idx} was restarted"
        );
    }
}
