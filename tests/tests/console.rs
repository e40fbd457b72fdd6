//! The web console (`gateway/console/`, its API in `gateway/console/API.md`) on a real 6-node
//! cluster: its API's rules checked over raw HTTP (a session per login, the change header,
//! users' rights as in S3, administrators only for users and keys), then the page itself in
//! headless chromium (`tests/console/console.mjs`): log in and see every node Up, `kill -9` a
//! node and see it Down, restart it and see it Up, upload and download a file, create a
//! lifecycle rule (and see an invalid one refused), and manage users and keys. With
//! `DMPSTORE_CONSOLE_SCREENSHOTS=DIR` the steps save screenshots there (the README's).

use dmpstore_tests::{put_bytes, repo_root, test_data, Cluster};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

/// One HTTP/1.1 exchange on a fresh connection: `(status, response head, body as text)`.
fn call(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let (status, head, bytes) = exchange(addr, method, path, headers, body);
    (status, head, String::from_utf8_lossy(&bytes).into_owned())
}

/// [`call`] with the body as bytes.
fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head, body)
}

/// Logs in with a key; returns the session cookie (`name=value`).
fn login(addr: &str, ak: &str, sk: &str) -> String {
    let body = serde_json::json!({"access_key": ak, "secret_key": sk}).to_string();
    let (status, head, text) = call(
        addr,
        "POST",
        "/api/login",
        &[("X-Dmpstore-Console", "1")],
        &body,
    );
    assert_eq!(status, 200, "login: {text}");
    let line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie");
    assert!(
        line.contains("HttpOnly") && line.contains("SameSite=Strict"),
        "{line}"
    );
    line.split_once(':')
        .unwrap()
        .1
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

fn error_code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["error"].as_str().unwrap_or("").to_string()
}

/// The console's address of gateway 0, once it answers.
fn console_addr(cluster: &Cluster) -> String {
    let gw = cluster
        .info
        .processes
        .iter()
        .find(|p| p.role == "gateway")
        .expect("a gateway");
    let addr = gw
        .console_addr
        .clone()
        .expect("local-cluster.sh gives gateways a console");
    dmpstore_tests::wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).is_ok()
    })
    .expect("the console listens");
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_acts_with_the_rights_of_the_logged_in_key() {
    let cluster = Cluster::start(6, 1).unwrap();
    let addr = console_addr(&cluster);
    let (admin_ak, admin_sk) = (
        cluster.info.access_key.clone(),
        cluster.info.secret_key.clone(),
    );

    // The page is served from the binary, with a policy that forbids anything from elsewhere.
    let (status, head, page) = call(&addr, "GET", "/", &[], "");
    assert_eq!(status, 200);
    assert!(page.contains("dmpstore"), "{page}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'self'"),
        "{head}"
    );

    // No session: 401; a wrong secret: 401.
    let (status, _, _) = call(&addr, "GET", "/api/buckets", &[], "");
    assert_eq!(status, 401);
    let wrong = serde_json::json!({"access_key": admin_ak, "secret_key": "wrong"}).to_string();
    let (status, _, _) = call(
        &addr,
        "POST",
        "/api/login",
        &[("X-Dmpstore-Console", "1")],
        &wrong,
    );
    assert_eq!(status, 401);

    let admin = login(&addr, &admin_ak, &admin_sk);
    let cookie = [("Cookie", admin.as_str())];
    let change = [("Cookie", admin.as_str()), ("X-Dmpstore-Console", "1")];
    // A change without the console's header is refused (another site's form cannot send it).
    let (status, _, _) = call(
        &addr,
        "POST",
        "/api/buckets",
        &cookie,
        r#"{"name":"forged"}"#,
    );
    assert_eq!(status, 403);
    let (status, _, text) = call(
        &addr,
        "POST",
        "/api/buckets",
        &change,
        r#"{"name":"segments"}"#,
    );
    assert_eq!(status, 200, "{text}");
    let (status, _, text) = call(
        &addr,
        "POST",
        "/api/buckets",
        &change,
        r#"{"name":"No_Such"}"#,
    );
    assert_eq!(
        (status, error_code(&text)),
        (400, "InvalidBucketName".into())
    );
    let (status, _, text) = call(
        &addr,
        "POST",
        "/api/users",
        &change,
        r#"{"name":"analyst"}"#,
    );
    assert_eq!(status, 200, "{text}");
    let user: serde_json::Value = serde_json::from_str(&text).unwrap();

    // What the S3 API wrote, the console lists; what the console uploads, S3 reads.
    let s3 = cluster.client(0);
    let data = test_data(1, 70_000);
    put_bytes(&s3, "segments", "2026/12/part-0000.parquet", &data)
        .await
        .unwrap();
    let (status, _, text) = call(
        &addr,
        "GET",
        "/api/buckets/segments/objects?prefix=2026%2F",
        &cookie,
        "",
    );
    assert_eq!(status, 200, "{text}");
    let listing: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listing["prefixes"], serde_json::json!(["2026/12/"]));
    let (status, head, body) = exchange(
        &addr,
        "GET",
        "/api/buckets/segments/objects/2026%2F12%2Fpart-0000.parquet",
        &cookie,
        "",
    );
    assert_eq!(status, 200);
    assert!(head.contains("filename=\"part-0000.parquet\""), "{head}");
    assert!(body == data, "the console's download is the object's bytes");

    // A user sees none of the administrator's buckets, and may not read them through the
    // console any more than through S3; users and keys are not its business.
    let analyst = login(
        &addr,
        user["access_key"].as_str().unwrap(),
        user["secret_key"].as_str().unwrap(),
    );
    let as_user = [("Cookie", analyst.as_str())];
    let (status, _, text) = call(&addr, "GET", "/api/buckets", &as_user, "");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["buckets"],
        serde_json::json!([])
    );
    let (status, _, text) = call(&addr, "GET", "/api/buckets/segments/objects", &as_user, "");
    assert_eq!((status, error_code(&text)), (403, "AccessDenied".into()));
    let (status, _, _) = call(&addr, "GET", "/api/users", &as_user, "");
    assert_eq!(status, 403);

    // Lifecycle rules put through the console are the bucket's rules for S3 clients too.
    let rules = r#"{"Rules":[{"ID":"old-events","Status":"Enabled","Filter":{"Prefix":"events/"},"Expiration":{"Days":30}}]}"#;
    let (status, _, text) = call(
        &addr,
        "PUT",
        "/api/buckets/segments/lifecycle",
        &change,
        rules,
    );
    assert_eq!(status, 200, "{text}");
    let got = s3
        .get_bucket_lifecycle_configuration()
        .bucket("segments")
        .send()
        .await
        .unwrap();
    assert_eq!(got.rules()[0].id(), Some("old-events"));
    let bad = r#"{"Rules":[{"ID":"x","Status":"Enabled","Expiration":{"Days":0}}]}"#;
    let (status, _, text) = call(
        &addr,
        "PUT",
        "/api/buckets/segments/lifecycle",
        &change,
        bad,
    );
    assert_eq!((status, error_code(&text)), (400, "InvalidArgument".into()));

    // Disabling the key ends its sessions (within the key cache's TTL).
    cluster
        .admin(&[
            "key",
            "disable",
            "--user",
            "analyst",
            "--access-key",
            user["access_key"].as_str().unwrap(),
        ])
        .unwrap();
    dmpstore_tests::wait_until(Duration::from_secs(30), || {
        call(&addr, "GET", "/api/me", &as_user, "").0 == 401
    })
    .expect("a disabled key's session ends");
    // Logging out ends the session at once.
    let (status, _, _) = call(&addr, "POST", "/api/logout", &change, "");
    assert_eq!(status, 200);
    assert_eq!(call(&addr, "GET", "/api/me", &cookie, "").0, 401);
    cluster.assert_no_error_logs();
}

/// Runs one step of the browser test; panics with its output if it fails.
fn step(addr: &str, cluster: &Cluster, args: &[&str], screenshots: &std::path::Path) {
    let mut cmd = Command::new("node");
    cmd.arg(repo_root().join("tests/console/console.mjs"))
        .args(args)
        .env("CONSOLE_URL", format!("http://{addr}"))
        .env("ACCESS_KEY", &cluster.info.access_key)
        .env("SECRET_KEY", &cluster.info.secret_key)
        .env("EXPECT_NODES", "6")
        .env("WAIT_SECS", "60")
        .env("SCREENSHOT_DIR", screenshots)
        .stdin(Stdio::null());
    let out = cmd.output().expect("run node tests/console/console.mjs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "console step {args:?} failed:\n{text}"
    );
    eprint!("{text}");
}

#[test]
fn a_person_operates_the_cluster_from_the_browser() {
    let mut cluster = Cluster::start(6, 1).unwrap();
    let addr = console_addr(&cluster);
    let shots = match std::env::var_os("DMPSTORE_CONSOLE_SCREENSHOTS") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => cluster.dir.path().join("screenshots"),
    };
    std::fs::create_dir_all(&shots).unwrap();
    step(&addr, &cluster, &["login"], &shots);
    cluster.kill_node(2).unwrap();
    step(&addr, &cluster, &["node-state", "3", "Down"], &shots);
    cluster.restart_node(2).unwrap();
    let run = |args: &[&str]| step(&addr, &cluster, args, &shots);
    run(&["node-state", "3", "Up"]);
    run(&["upload-download", "console-files"]);
    run(&["lifecycle", "console-files"]);
    run(&["users"]);
    run(&["screenshots", "console-files"]);
    for page in ["cluster", "buckets", "bucket", "lifecycle", "users"] {
        let png = shots.join(format!("console-{page}.png"));
        let len = std::fs::metadata(&png).map_or(0, |m| m.len());
        assert!(
            len > 10_000,
            "{} is a real screenshot ({len} bytes)",
            png.display()
        );
    }
    cluster.assert_no_error_logs();
}
