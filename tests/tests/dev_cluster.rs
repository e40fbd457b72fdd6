//! The README's first command: `gateway dev` starts a working embedded cluster with its web
//! console, stops cleanly on Ctrl-C, and serves the same data when started again on the same
//! directory.

use dmpstore_tests::{bin_dir, client, get_bytes, put_bytes, test_data, wait_exit, wait_until};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn start(dir: &std::path::Path, port: u16) -> Child {
    let console = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(bin_dir().join("gateway"))
        .args(["dev", "--data-dir"])
        .arg(dir)
        .args([
            "--console-addr",
            &console,
            "--s3-addr",
            &format!("127.0.0.1:{port}"),
            "--access-key",
            "devkey",
            "--secret-key",
            "devsecret",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gateway dev");
    // The endpoint line is printed once the S3 listener is bound.
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let endpoint_line = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("endpoint:"));
    assert!(endpoint_line.is_some_and(|l| l.contains(&format!("127.0.0.1:{port}"))));
    // The console's address beside it, and the console serving its page there.
    let console_line = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(
        console_line.contains(&format!("console:    http://{console}")),
        "{console_line}"
    );
    std::thread::spawn(move || for _ in lines {});
    let page = dmpstore_tests::http_get_text(&format!("http://{console}/")).unwrap();
    assert!(page.contains("<title>dmpstore"), "{page}");
    child
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn interrupt_and_wait(mut child: Child) {
    let pid = child.id();
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    wait_until(Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    })
    .unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "gateway dev did not stop cleanly: {status}"
    );
    wait_exit(pid, Duration::from_secs(5)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_cluster_serves_stops_cleanly_and_keeps_data_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let c = client(&endpoint, "devkey", "devsecret", "us-east-1");
    let small = test_data(1, 1234);
    let large = test_data(2, 5 * 1024 * 1024 + 3);

    let child = start(dir.path(), port);
    c.create_bucket().bucket("dev").send().await.unwrap();
    put_bytes(&c, "dev", "small", &small).await.unwrap();
    put_bytes(&c, "dev", "large", &large).await.unwrap();
    assert!(get_bytes(&c, "dev", "large").await.unwrap() == large);
    interrupt_and_wait(child);

    let child = start(dir.path(), port);
    assert!(get_bytes(&c, "dev", "small").await.unwrap() == small);
    assert!(get_bytes(&c, "dev", "large").await.unwrap() == large);
    let listed = c.list_objects_v2().bucket("dev").send().await.unwrap();
    assert_eq!(listed.contents().len(), 2);
    interrupt_and_wait(child);
}
