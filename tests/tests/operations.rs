//! Long admin commands a person follows: `scrub`, `drain` and `replace` with `--wait` show a
//! progress bar with an ETA and return only once the work is done, and what they report done
//! is: every object reads back byte for byte afterwards.

use dmpstore_tests::{get_bytes, put_bytes, test_data, Cluster};

/// Objects of one stripe and more, so every node holds chunks.
const OBJECTS: u64 = 12;

fn body(i: u64) -> Vec<u8> {
    test_data(i, 300_000 + i as usize * 50_000)
}

/// Progress lines of a `--wait` command: the bar, its share and an ETA or `done`.
fn assert_progress(out: &str, what: &str) {
    let bars: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(&format!("{what} [")))
        .collect();
    assert!(!bars.is_empty(), "no progress bar for {what}:\n{out}");
    let last = bars.last().unwrap();
    assert!(
        last.contains("100%") && last.contains("done"),
        "{what} ends at 100 %:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_admin_commands_show_progress_until_the_work_is_done() {
    // 7 nodes, so a drained node's chunks have somewhere to go (RS(4,2) uses 6).
    let mut cluster = Cluster::start_with(7, 1, &["--repair-delay", "2"]).unwrap();
    let c = cluster.client(0);
    c.create_bucket().bucket("ops").send().await.unwrap();
    for i in 0..OBJECTS {
        put_bytes(&c, "ops", &format!("o{i}"), &body(i))
            .await
            .unwrap();
    }
    let all_read = |c: aws_sdk_s3::Client| async move {
        for i in 0..OBJECTS {
            assert!(
                get_bytes(&c, "ops", &format!("o{i}")).await.unwrap() == body(i),
                "o{i}"
            );
        }
    };

    let out = cluster
        .admin(&["scrub", "--wait", "--timeout-secs", "300"])
        .unwrap();
    assert_progress(&out, "scrub");
    assert!(out.contains("scrub finished on every node"), "{out}");

    // n3 comes back empty: replace refills it. Done means done: with n1 and n2 gone as well,
    // the objects that had chunks on all three read only if n3 holds its chunks again.
    cluster.wipe_node(2).unwrap();
    let out = cluster
        .admin(&["replace", "--node", "n3", "--wait", "--timeout-secs", "300"])
        .unwrap();
    assert_progress(&out, "refill n3");
    assert!(out.contains("n3 holds what it should again"), "{out}");
    cluster.kill_node(0).unwrap();
    cluster.kill_node(1).unwrap();
    all_read(c.clone()).await;
    cluster.restart_node(0).unwrap();
    cluster.restart_node(1).unwrap();

    // Drain n3: its chunks move away while it still serves; then nothing needs it, so with
    // n3, n1 and n2 all gone every object still reads.
    let out = cluster
        .admin(&["drain", "--node", "n3", "--wait", "--timeout-secs", "300"])
        .unwrap();
    assert_progress(&out, "drain n3");
    assert!(out.contains("n3 drained"), "{out}");
    cluster.kill_node(2).unwrap();
    cluster.kill_node(0).unwrap();
    cluster.kill_node(1).unwrap();
    all_read(c.clone()).await;
}
