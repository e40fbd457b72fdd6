//! `DMPSTORE_LOG_FORMAT=json`: a real storage-node process logs one JSON object per line.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn json_log_lines_parse_and_carry_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = 1\nlisten_addr = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
             cluster_secret = \"test-cluster-secret-0123456789\"\ninsecure_plaintext_rpc = true\n",
            dir.path().join("db").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_storage-node"))
        .arg("--config")
        .arg(&config)
        .env("DMPSTORE_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut serving = None;
    for line in stderr.lines() {
        let line = line.unwrap();
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            event["timestamp"].is_string() && event["level"].is_string(),
            "{line}"
        );
        if event["message"] == "storage node serving" {
            serving = Some(event);
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let serving = serving.expect("the node logged that it serves");
    assert_eq!(serving["level"], "INFO");
    assert_eq!(serving["node"], "n1");
    assert_eq!(serving["tls"], false);
}
