//! The node's background work (DESIGN 7, 10, 11, 12): one [`Worker`] per concern, each a small
//! type over the shared [`NodeContext`], all run and restarted by the [`Supervisor`].
//!
//! - `context`: the state the workers share with each other and with the RPC server
//!   (store, RPC client, failure detector, queues' wake-ups, repair statistics) and the calls
//!   the server makes into it (enqueue, heal, drain, scrub or scan now).
//! - `status`: the node's repair status, assembled from the context.
//! - `scanner`: the repair scanner: walks the owned partitions after failures, map changes
//!   and on schedule, queues what needs repair with its owner, and takes the census.
//! - `rebuild`: the repair worker: works through the heal and repair queues.
//! - `reconstruct`: how one record is repaired: targets, stripes rebuilt, record rewritten.
//! - `heal`: a corrupt chunk rebuilt in place from its siblings.
//! - `scrub`: the scrubber: verifies every local chunk on schedule.
//! - `gc`: all garbage collection: scheduled drops of moved chunks, the orphan scan, and
//!   the tombstone purge that anti-entropy runs.
//! - `anti_entropy`: merges metadata replicas of the owned partitions.
//! - `drain`: the drain sweep of a node being drained.
//! - `heartbeat`: the failure detector's heartbeat rounds.
//!
//! The worker names are the supervisor's (logs, `dmpstore_worker_restarts_total`, status, the
//! test fault point `DMPSTORE_FAULT_PANIC_WORKER=NAME`) and are kept stable.

mod anti_entropy;
mod context;
mod drain;
mod gc;
mod heal;
mod heartbeat;
mod rebuild;
mod reconstruct;
mod scanner;
mod scrub;
mod status;

pub use context::{erasure_pieces, NodeContext, RepairError};

use crate::detector::Detector;
use crate::supervisor::Supervisor;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a worker says after a unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// More work is ready: call [`Worker::work`] again at once.
    Busy,
    /// Nothing is due: wait in [`Worker::wait_for_work`].
    Idle,
    /// The worker saw the shutdown and stopped.
    Done,
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorkerState::Busy => "busy",
            WorkerState::Idle => "idle",
            WorkerState::Done => "done",
        })
    }
}

/// One background concern of the node. The supervisor calls [`Worker::work`] while it says
/// [`WorkerState::Busy`], [`Worker::wait_for_work`] (cancelled at shutdown) while it says
/// [`WorkerState::Idle`], and stops at [`WorkerState::Done`]; after each step it keeps
/// [`Worker::status`] for the node's status.
///
/// A worker handles (and logs) its own errors where it can act on them: a failed unit is
/// retried on the worker's own terms (a queue's backoff, the next pass), so `work` returns
/// only a state.
pub trait Worker: Send + 'static {
    /// The worker's stable name.
    fn name(&self) -> &'static str;

    /// Does one unit of work if one is due, else returns [`WorkerState::Idle`] at once. A long
    /// unit checks `shutdown` between its steps and returns [`WorkerState::Done`] when it saw it.
    fn work(&mut self, shutdown: &CancellationToken) -> impl Future<Output = WorkerState> + Send;

    /// Waits until work may be due (a timer, a wake-up, a request).
    fn wait_for_work(&mut self) -> impl Future<Output = ()> + Send;

    /// One line saying what the worker did last.
    fn status(&self) -> String;

    /// Whether the worker runs on a thread of its own, with its own single-threaded runtime,
    /// so no work queued on the node's main runtime or storage pool can delay it.
    fn own_thread(&self) -> bool {
        false
    }
}

/// The timing of a worker that waits `period` after each unit, or less when asked: a unit is
/// due once [`Cadence::wait`] returned, and the next wait is counted from [`Cadence::restart`].
struct Cadence {
    period: Duration,
    next: Instant,
    due: bool,
}

impl Cadence {
    fn new(period: Duration) -> Cadence {
        Cadence {
            period,
            next: Instant::now() + period,
            due: false,
        }
    }

    /// Whether a unit is due (and no longer, once asked).
    fn take_due(&mut self) -> bool {
        std::mem::take(&mut self.due)
    }

    /// The next unit is due `period` from now.
    fn restart(&mut self) {
        self.next = Instant::now() + self.period;
    }

    /// Waits for the period to pass, or for `asked` to be notified.
    async fn wait(&mut self, asked: Option<&tokio::sync::Notify>) {
        match asked {
            Some(asked) => tokio::select! {
                () = tokio::time::sleep_until(self.next) => {}
                () = asked.notified() => {}
            },
            None => tokio::time::sleep_until(self.next).await,
        }
        self.due = true;
    }
}

/// Starts every background worker of a cluster node under `supervisor`, until `shutdown`.
pub fn start(
    context: &Arc<NodeContext>,
    detector: &Arc<Detector>,
    supervisor: &Supervisor,
    shutdown: &CancellationToken,
) {
    let d = detector.clone();
    supervisor.spawn(shutdown.clone(), move || {
        heartbeat::Heartbeat::new(d.clone())
    });
    spawn(supervisor, shutdown, context, scanner::Scanner::new);
    spawn(supervisor, shutdown, context, rebuild::Rebuild::new);
    spawn(supervisor, shutdown, context, scrub::Scrubber::new);
    spawn(supervisor, shutdown, context, gc::MovedChunks::new);
    spawn(
        supervisor,
        shutdown,
        context,
        anti_entropy::AntiEntropy::new,
    );
    spawn(supervisor, shutdown, context, gc::OrphanScan::new);
    spawn(supervisor, shutdown, context, drain::DrainSweep::new);
}

/// Runs the worker `make` makes over the context under `supervisor`.
fn spawn<W: Worker>(
    supervisor: &Supervisor,
    shutdown: &CancellationToken,
    context: &Arc<NodeContext>,
    make: fn(Arc<NodeContext>) -> W,
) {
    let context = context.clone();
    supervisor.spawn(shutdown.clone(), move || make(context.clone()));
}
