//! The client matrix: aws cli (s3 and s3api, sync, multipart thresholds), boto3, rclone and
//! s3cmd against a multi-process cluster, and virtual-hosted-style requests, through
//! `tests/clients/matrix.py`, all over HTTPS with the cluster's test CA as the only trusted
//! root (plain HTTP is what every other test uses). The Rust SDK is exercised by the other
//! test files with its default settings (CRC32 checksums included).

use dmpstore_tests::{repo_root, Cluster};
use std::process::Command;

#[test]
fn aws_cli_boto3_rclone_and_s3cmd_work_unmodified() {
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
}
