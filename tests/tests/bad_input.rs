//! Bad input over raw sockets (`tests/clients/bad_input.py`): malformed XML, a body cut short,
//! oversized headers, bytes that are not HTTP, an invalid part number. Each gets a clear error
//! or a closed connection, nothing is lost, the gateway keeps serving, and no ERROR is logged.

use dmpstore_tests::{repo_root, Cluster};
use std::process::Command;

#[test]
fn bad_input_gets_clear_errors_and_loses_nothing() {
    let cluster = Cluster::start(6, 1).unwrap();
    let out = Command::new("python3")
        .arg(repo_root().join("tests/clients/bad_input.py"))
        .arg(cluster.dir.path().join("cluster.json"))
        .output()
        .expect("run python3 tests/clients/bad_input.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "bad input cases failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("6 passed, 0 failed"), "{stdout}");
    cluster.assert_no_error_logs();
}
