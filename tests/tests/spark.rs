//! Spark through the Hadoop S3A connector (pyspark from PyPI, hadoop-aws and its AWS SDK from
//! Maven, cached in ~/.cache/dmpstore/ivy): `tests/spark/spark_job.py` writes and checks 1M rows
//! of Parquet and overwrites a partitioned table, once with the classic FileOutputCommitter
//! (renames = copy + delete) and once with the S3A magic committer, each through a different
//! gateway: the first serves HTTPS (S3A with `connection.ssl.enabled` and the test CA in a
//! Java truststore), the second plain HTTP. Bounded by `timeout`.

use dmpstore_tests::{repo_root, Cluster};
use std::process::Command;

fn run_job(cluster: &Cluster, committer: &str, gateway: usize) -> String {
    let out = Command::new("timeout")
        .args(["900", "python3"])
        .arg(repo_root().join("tests/spark/spark_job.py"))
        .arg(cluster.dir.path().join("cluster.json"))
        .args([committer, &gateway.to_string()])
        .output()
        .expect("run the Spark job (scripts/setup.sh installs pyspark and Java)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Spark job with the {committer} committer failed:\n{stdout}\n{}",
        &stderr[stderr.len().saturating_sub(6000)..]
    );
    let result = stdout.lines().last().unwrap_or_default().to_string();
    assert!(
        result.contains(&format!("\"committer\": \"{committer}\"")),
        "unexpected output: {stdout}"
    );
    result
}

#[tokio::test(flavor = "multi_thread")]
async fn spark_writes_reads_and_overwrites_parquet_with_both_committers() {
    let cluster = Cluster::start_with(6, 2, &["--tls-gateways", "1"]).unwrap();
    assert!(cluster.info.s3_endpoints[0].starts_with("https://"));
    assert!(cluster.info.s3_endpoints[1].starts_with("http://"));
    cluster
        .client(0)
        .create_bucket()
        .bucket("spark")
        .send()
        .await
        .unwrap();
    let file = run_job(&cluster, "file", 0);
    let magic = run_job(&cluster, "magic", 1);
    println!("spark file committer:  {file}");
    println!("spark magic committer: {magic}");
    // The magic committer completes its uploads at job commit: none may be left behind.
    let uploads = cluster
        .client(0)
        .list_multipart_uploads()
        .bucket("spark")
        .send()
        .await
        .unwrap();
    assert!(
        uploads.uploads().is_empty(),
        "uploads left: {:?}",
        uploads.uploads()
    );
}
