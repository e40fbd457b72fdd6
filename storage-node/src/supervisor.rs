//! Runs the node's background workers (detector, repair scanner and worker, scrub, garbage
//! collection, anti-entropy, orphan scan, drain sweep: see [`crate::workers`]) and keeps them
//! running: a worker that panics is counted, logged with its message, and started again (made
//! afresh) after a backoff that doubles up to [`MAX_BACKOFF`] (and starts over once a run
//! lasted [`STABLE_RUN`]). A worker that stops ([`WorkerState::Done`], or shutdown while it
//! waits for work) has stopped for shutdown and is not restarted.
//!
//! Between its steps a worker is driven as its [`WorkerState`] says (work again, wait for
//! work, stop), and its status line is kept for the node's status.
//!
//! Test fault point: `DMPSTORE_FAULT_PANIC_WORKER=NAME` makes worker NAME panic once, at its
//! first start, so tests can see it restarted.

use crate::workers::{Worker, WorkerState};
use dmpstore_common::rpc::WorkerReport;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The longest wait before a panicked worker starts again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// A run this long resets the backoff: the worker was healthy in between.
const STABLE_RUN: Duration = Duration::from_secs(60);

type Reports = Arc<Mutex<BTreeMap<&'static str, WorkerReport>>>;

#[derive(Clone, Default)]
pub struct Supervisor {
    tasks: TaskTracker,
    reports: Reports,
}

impl Supervisor {
    pub fn new(tasks: TaskTracker) -> Supervisor {
        Supervisor {
            tasks,
            reports: Arc::default(),
        }
    }

    /// Runs the worker `make` makes, made afresh by `make` on every restart, until `shutdown`.
    pub fn spawn<W, F>(&self, shutdown: CancellationToken, make: F)
    where
        W: Worker,
        F: Fn() -> W + Send + 'static,
    {
        let first = make();
        let name = first.name();
        self.reports.lock().expect("reports").insert(
            name,
            WorkerReport {
                name: name.to_string(),
                ..WorkerReport::default()
            },
        );
        let reports = self.reports.clone();
        let fault = std::env::var("DMPSTORE_FAULT_PANIC_WORKER").is_ok_and(|w| w == name);
        self.tasks
            .spawn(supervise(name, first, make, fault, shutdown, reports));
    }

    /// Every worker's restarts, last panic and status line.
    pub fn reports(&self) -> Vec<WorkerReport> {
        self.reports
            .lock()
            .expect("reports")
            .values()
            .cloned()
            .collect()
    }
}

/// Runs `first`, then a fresh worker from `make` after each panic (with backoff), until one
/// stops.
async fn supervise<W, F>(
    name: &'static str,
    first: W,
    make: F,
    mut fault: bool,
    shutdown: CancellationToken,
    reports: Reports,
) where
    W: Worker,
    F: Fn() -> W + Send + 'static,
{
    let mut backoff = FIRST_BACKOFF;
    let mut next = Some(first);
    loop {
        let worker = next.take().unwrap_or_else(&make);
        let inject = std::mem::take(&mut fault);
        let started = Instant::now();
        let (sd, r) = (shutdown.clone(), reports.clone());
        let own_thread = worker.own_thread();
        let unit = move || async move {
            if inject {
                panic!("fault point DMPSTORE_FAULT_PANIC_WORKER");
            }
            drive(worker, &sd, &r).await
        };
        let run = if own_thread {
            tokio::spawn(on_own_thread(name, unit))
        } else {
            tokio::spawn(unit())
        };
        let panic = match run.await {
            Ok(()) => return,
            Err(e) if e.is_panic() => panic_message(e.into_panic()),
            Err(_) => return,
        };
        if started.elapsed() >= STABLE_RUN {
            backoff = FIRST_BACKOFF;
        }
        tracing::error!(
            worker = name,
            panic = %panic,
            restart_in_ms = backoff.as_millis() as u64,
            "background worker panicked; restarting it"
        );
        {
            let mut r = reports.lock().expect("reports");
            let report = r.entry(name).or_default();
            report.restarts += 1;
            report.last_panic = Some(panic);
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Drives one worker as its state says until it stops or `shutdown` ends its wait, keeping its
/// status line after each step.
async fn drive<W: Worker>(mut worker: W, shutdown: &CancellationToken, reports: &Reports) {
    let name = worker.name();
    loop {
        let state = worker.work(shutdown).await;
        let status = format!("{state}: {}", worker.status());
        if let Some(report) = reports.lock().expect("reports").get_mut(name) {
            report.status = status;
        }
        match state {
            WorkerState::Busy => {}
            WorkerState::Idle => tokio::select! {
                () = worker.wait_for_work() => {}
                () = shutdown.cancelled() => return,
            },
            WorkerState::Done => return,
        }
    }
}

/// Runs `make()` to completion on a thread of its own with a single-threaded runtime, so no
/// work queued on the node's main runtime or storage pool can delay it (the failure detector's
/// heartbeats). A panic there is raised again here, so the supervisor restarts the worker.
pub async fn on_own_thread<F, Fut>(name: &'static str, make: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a single-threaded runtime builds");
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(make())));
            let _ = done_tx.send(outcome);
        });
    if let Err(e) = spawned {
        panic!("could not start the thread of worker {name}: {e}");
    }
    if let Ok(Err(panic)) = done_rx.await {
        std::panic::resume_unwind(panic);
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Panics at its first two starts; then does one unit and waits forever.
    struct Flaky {
        start: u32,
        done: Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
    }

    impl Worker for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }

        async fn work(&mut self, _shutdown: &CancellationToken) -> WorkerState {
            if self.start < 2 {
                panic!("boom {}", self.start);
            }
            if let Some(tx) = self.done.lock().unwrap().take() {
                let _ = tx.send(());
            }
            WorkerState::Idle
        }

        async fn wait_for_work(&mut self) {
            std::future::pending::<()>().await
        }

        fn status(&self) -> String {
            format!("start {}", self.start)
        }
    }

    /// Busy for three units, then done.
    struct Counter(u32);

    impl Worker for Counter {
        fn name(&self) -> &'static str {
            "counter"
        }

        async fn work(&mut self, _shutdown: &CancellationToken) -> WorkerState {
            self.0 += 1;
            if self.0 < 3 {
                WorkerState::Busy
            } else {
                WorkerState::Done
            }
        }

        async fn wait_for_work(&mut self) {
            unreachable!("a busy worker is not asked to wait")
        }

        fn status(&self) -> String {
            format!("{} units", self.0)
        }
    }

    #[tokio::test]
    async fn a_panicking_worker_is_restarted_and_counted() {
        let supervisor = Supervisor::new(TaskTracker::new());
        let shutdown = CancellationToken::new();
        let starts = Arc::new(AtomicU32::new(0));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let done = Arc::new(Mutex::new(Some(done_tx)));
        let s = starts.clone();
        supervisor.spawn(shutdown.clone(), move || Flaky {
            start: s.fetch_add(1, Ordering::SeqCst),
            done: done.clone(),
        });
        done_rx.await.unwrap();
        assert_eq!(starts.load(Ordering::SeqCst), 3);
        let reports = supervisor.reports();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].restarts, 2);
        assert_eq!(reports[0].last_panic.as_deref(), Some("boom 1"));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn work_on_its_own_thread_runs_there_and_its_panic_comes_back() {
        let main_thread = std::thread::current().id();
        let (tx, rx) = tokio::sync::oneshot::channel();
        on_own_thread("own", move || async move {
            tokio::task::yield_now().await;
            let _ = tx.send(std::thread::current().id());
        })
        .await;
        assert_ne!(rx.await.unwrap(), main_thread);
        let panicked = tokio::spawn(on_own_thread("own", || async { panic!("boom") })).await;
        let message = panic_message(panicked.unwrap_err().into_panic());
        assert_eq!(message, "boom");
    }

    #[tokio::test]
    async fn a_worker_runs_while_busy_stops_when_done_and_reports_its_status() {
        let tasks = TaskTracker::new();
        let supervisor = Supervisor::new(tasks.clone());
        supervisor.spawn(CancellationToken::new(), || Counter(0));
        tasks.close();
        tasks.wait().await;
        let reports = supervisor.reports();
        assert_eq!(reports[0].name, "counter");
        assert_eq!(reports[0].status, "done: 3 units");
        assert_eq!(reports[0].restarts, 0);
    }
}
