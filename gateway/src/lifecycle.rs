//! Lifecycle rules (ADR 0009): the bucket's configuration (Put/Get/DeleteBucketLifecycle) and
//! the worker that applies it.
//!
//! Configurations live in the [`LIFECYCLE_PARTITION`], one record per bucket, tied to the
//! bucket's creation time so a deleted bucket's rules never reach a new bucket of that name.
//! The worker runs on every gateway; a pass over one bucket is owned by whichever gateway holds
//! the lease on the bucket's progress record, one slice of at most [`SLICE_TTL`] at a time. A
//! slice records its progress every [`CHECKPOINT_EVERY`] and the next slice resumes after the
//! last key recorded, so a pass survives restarts and crashes and moves between gateways. A pass walks the bucket's current objects (or, in a versioned
//! bucket, all versions, key by key), then its multipart uploads. Every action re-checks its
//! condition under the key's leases, so an object written after the walk saw its key is never
//! expired in its place (ADR 0005's fencing).

use crate::error::GatewayError;
use crate::state::GatewayState;
use crate::{buckets, meta, multipart, tagging, versions};
use dmpstore_common::lifecycle::{self as rules, CurrentAction, LifecycleConfiguration};
use dmpstore_common::limits::MAX_SCAN_ENTRIES;
use dmpstore_common::record::{
    key_of_version_sort_key, lifecycle_progress_key, lifecycle_rules_key, uploads_partition,
    versions_partition, BucketRecord, LifecycleProgress, LifecycleRecord, MetaValue, Versioning,
    LIFECYCLE_PARTITION,
};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Lease on a bucket's progress record that one slice of a pass holds.
const SLICE_TTL: Duration = Duration::from_secs(60);
/// A slice stops this long before its lease's last write moment, to record its progress.
const SLICE_MARGIN: Duration = Duration::from_secs(5);
/// How often a slice records its progress.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// How often the worker looks for buckets whose pass is due (at most; a shorter pass interval
/// is looked at that often).
const CHECK_EVERY: Duration = Duration::from_secs(30);

/// GetBucketLifecycleConfiguration.
pub async fn get_rules(
    state: &Arc<GatewayState>,
    bucket: &str,
) -> Result<LifecycleConfiguration, GatewayError> {
    let b = buckets::ensure_exists(state, bucket).await?;
    match meta::get(state, LIFECYCLE_PARTITION, &lifecycle_rules_key(bucket)).await? {
        Some(MetaValue::LifecycleRules(r)) if r.bucket_created_ms == b.created_ms => {
            Ok(r.configuration)
        }
        _ => Err(GatewayError::NoSuchLifecycleConfiguration),
    }
}

/// PutBucketLifecycleConfiguration: validated as S3 does, then stored whole; a rule without
/// an ID gets one, as in S3.
pub async fn put_rules(
    state: &Arc<GatewayState>,
    bucket: &str,
    mut configuration: LifecycleConfiguration,
) -> Result<(), GatewayError> {
    for rule in configuration.rules.iter_mut().filter(|r| r.id.is_none()) {
        rule.id = Some(hex::encode(rand::random::<[u8; 16]>()));
    }
    configuration.validate().map_err(|e| match e {
        rules::LifecycleError::Malformed(m) => GatewayError::MalformedXml(m),
        rules::LifecycleError::InvalidArgument(m) => GatewayError::InvalidArgument(m),
        rules::LifecycleError::InvalidRequest(m) => GatewayError::InvalidRequest(m),
    })?;
    let b = buckets::writable(state, bucket).await?;
    let record = MetaValue::LifecycleRules(LifecycleRecord {
        bucket_created_ms: b.created_ms,
        configuration,
    });
    meta::put(
        state,
        LIFECYCLE_PARTITION,
        &lifecycle_rules_key(bucket),
        &record,
    )
    .await?;
    Ok(())
}

/// DeleteBucketLifecycle (deleting none succeeds, as in S3).
pub async fn delete_rules(state: &Arc<GatewayState>, bucket: &str) -> Result<(), GatewayError> {
    buckets::ensure_exists(state, bucket).await?;
    let tombstone = MetaValue::Tombstone {
        deleted_ms: GatewayState::now_ms(),
    };
    meta::put(
        state,
        LIFECYCLE_PARTITION,
        &lifecycle_rules_key(bucket),
        &tombstone,
    )
    .await?;
    Ok(())
}

/// Every bucket's configuration and the worker's progress through it, for status.
pub async fn overview(
    state: &Arc<GatewayState>,
) -> Result<Vec<(String, LifecycleRecord, Option<LifecycleProgress>)>, GatewayError> {
    let mut out = Vec::new();
    for (bucket, record) in all_rules(state).await? {
        let progress =
            match meta::get(state, LIFECYCLE_PARTITION, &lifecycle_progress_key(&bucket)).await? {
                Some(MetaValue::LifecycleProgress(p))
                    if p.bucket_created_ms == record.bucket_created_ms =>
                {
                    Some(p)
                }
                _ => None,
            };
        out.push((bucket, record, progress));
    }
    Ok(out)
}

/// Every stored configuration, by bucket name.
async fn all_rules(
    state: &Arc<GatewayState>,
) -> Result<Vec<(String, LifecycleRecord)>, GatewayError> {
    let prefix = lifecycle_rules_key("");
    let mut out = Vec::new();
    let mut cursor = Vec::new();
    loop {
        let page = meta::scan(
            state,
            LIFECYCLE_PARTITION,
            &prefix,
            &cursor,
            MAX_SCAN_ENTRIES,
            meta::Bodies::Without,
        )
        .await?;
        for (key, value) in page.entries {
            if let MetaValue::LifecycleRules(r) = value {
                out.push((key[prefix.len()..].to_string(), r));
            }
        }
        match page.next {
            Some(next) => cursor = next,
            None => return Ok(out),
        }
    }
}

/// The worker: every [`CHECK_EVERY`] (or pass interval, if shorter) it runs a slice of every
/// bucket whose pass is due or under way, until `shutdown`.
pub async fn run_worker(state: Arc<GatewayState>, shutdown: CancellationToken) {
    let settings = state.config.lifecycle;
    if !settings.enabled {
        tracing::info!("lifecycle worker off on this gateway (lifecycle.enabled = false)");
        return;
    }
    let worker = Worker {
        pace: Duration::from_secs(1) / settings.max_actions_per_sec,
        day_ms: settings.day().as_millis() as u64,
        interval_ms: settings.pass_interval().as_millis() as u64,
        state,
        shutdown,
    };
    let mut tick = tokio::time::interval(settings.pass_interval().min(CHECK_EVERY));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = worker.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = worker.run_due().await {
            tracing::warn!(error = %e, "lifecycle: could not look for due buckets; retrying later");
        }
    }
}

struct Worker {
    state: Arc<GatewayState>,
    shutdown: CancellationToken,
    /// Pause after each action ([`crate::config::LifecycleConfig::max_actions_per_sec`]).
    pace: Duration,
    day_ms: u64,
    interval_ms: u64,
}

/// Where one step of a walk left off.
enum Step {
    /// More to walk; resume after this sort key.
    More(Vec<u8>),
    Done,
}

impl Worker {
    /// Runs a slice of every bucket whose pass is due; drops configurations whose bucket is
    /// gone.
    async fn run_due(&self) -> Result<(), GatewayError> {
        for (bucket, record) in all_rules(&self.state).await? {
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            let b = match buckets::find(&self.state, &bucket).await? {
                Some(b) if b.created_ms == record.bucket_created_ms => b,
                _ => {
                    self.forget(&bucket).await;
                    continue;
                }
            };
            let key = lifecycle_progress_key(&bucket);
            let slice =
                meta::with_lease_for(&self.state, LIFECYCLE_PARTITION, &key, SLICE_TTL, |lease| {
                    self.slice(&bucket, &b, &record, lease)
                })
                .await;
            match slice {
                Ok(()) => {}
                // Another gateway runs this bucket's slice now.
                Err(GatewayError::ConditionalRequestConflict) => {
                    tracing::debug!(bucket, "lifecycle: another gateway holds this bucket")
                }
                Err(e) => {
                    tracing::warn!(bucket, error = %e, "lifecycle: slice failed; resumes later")
                }
            }
        }
        Ok(())
    }

    /// Tombstones the rules (and progress) of a bucket that was deleted.
    async fn forget(&self, bucket: &str) {
        let tombstone = MetaValue::Tombstone {
            deleted_ms: GatewayState::now_ms(),
        };
        for key in [lifecycle_rules_key(bucket), lifecycle_progress_key(bucket)] {
            if let Err(e) = meta::put(&self.state, LIFECYCLE_PARTITION, &key, &tombstone).await {
                tracing::debug!(bucket, error = %e, "lifecycle: dropping a gone bucket's rules failed");
            }
        }
        tracing::info!(
            bucket,
            "lifecycle: the bucket is gone; its rules were dropped"
        );
    }

    /// One slice of `bucket`'s pass under the lease on its progress record: starts a pass if
    /// one is due, walks until the lease's end draws near, and records how far it got.
    async fn slice(
        &self,
        bucket: &str,
        b: &BucketRecord,
        record: &LifecycleRecord,
        lease: Arc<meta::KeyLease>,
    ) -> Result<(), GatewayError> {
        let key = lifecycle_progress_key(bucket);
        let mut p = match meta::get(&self.state, LIFECYCLE_PARTITION, &key).await? {
            Some(MetaValue::LifecycleProgress(p)) if p.bucket_created_ms == b.created_ms => p,
            _ => LifecycleProgress {
                bucket_created_ms: b.created_ms,
                ..Default::default()
            },
        };
        let now = GatewayState::now_ms();
        if p.pass_started_ms.is_none() {
            if p.last_pass_end_ms
                .is_some_and(|end| now < end + self.interval_ms)
            {
                return Ok(());
            }
            p.pass_started_ms = Some(now);
            p.in_uploads = false;
            p.cursor.clear();
            tracing::info!(bucket, pass = p.passes + 1, "lifecycle: pass started");
        }
        let slice_end = lease.write_by() - SLICE_MARGIN;
        let rules = &record.configuration.rules;
        while tokio::time::Instant::now() < slice_end && !self.shutdown.is_cancelled() {
            // A step ends by the next checkpoint, so a gateway that dies mid-slice loses at
            // most [`CHECKPOINT_EVERY`] of work: the next holder resumes from the checkpoint.
            let step_end = (tokio::time::Instant::now() + CHECKPOINT_EVERY).min(slice_end);
            let step = if p.in_uploads {
                self.uploads_step(bucket, rules, &mut p, step_end).await?
            } else {
                self.objects_step(bucket, b.versioning, rules, &mut p, step_end)
                    .await?
            };
            match step {
                Step::More(cursor) => p.cursor = cursor,
                Step::Done if !p.in_uploads => {
                    p.in_uploads = true;
                    p.cursor.clear();
                }
                Step::Done => {
                    let end = GatewayState::now_ms();
                    tracing::info!(
                        bucket,
                        pass = p.passes + 1,
                        secs = (end - p.pass_started_ms.unwrap_or(end)) / 1000,
                        expired = p.expired,
                        noncurrent_expired = p.noncurrent_expired,
                        uploads_aborted = p.uploads_aborted,
                        "lifecycle: pass finished (totals since the rules were first set)"
                    );
                    p.passes += 1;
                    p.last_pass_end_ms = Some(end);
                    p.pass_started_ms = None;
                    p.in_uploads = false;
                    p.cursor.clear();
                    break;
                }
            }
            let checkpoint = MetaValue::LifecycleProgress(p.clone());
            meta::put_fenced(&self.state, &lease, &checkpoint).await?;
        }
        meta::put_fenced(&self.state, &lease, &MetaValue::LifecycleProgress(p)).await?;
        Ok(())
    }

    /// One page of the walk over the bucket's objects: current records in an unversioned
    /// bucket, every version (key by key, newest first) in a versioned one. Stops early at
    /// `stop_at`, after the last key it finished.
    async fn objects_step(
        &self,
        bucket: &str,
        versioning: Versioning,
        rules: &[rules::LifecycleRule],
        p: &mut LifecycleProgress,
        stop_at: tokio::time::Instant,
    ) -> Result<Step, GatewayError> {
        let partition = match versioning {
            Versioning::Unversioned => bucket.to_string(),
            _ => versions_partition(bucket),
        };
        let page = meta::scan(
            &self.state,
            &partition,
            "",
            &p.cursor,
            MAX_SCAN_ENTRIES,
            meta::Bodies::Without,
        )
        .await?;
        if versioning == Versioning::Unversioned {
            for (key, value) in page.entries {
                if self.out_of_time(stop_at) {
                    return Ok(Step::More(p.cursor.clone()));
                }
                p.scanned += 1;
                if let MetaValue::Object(r) = &value {
                    let facts = self.facts(bucket, &key, r, rules).await?;
                    let now = (GatewayState::now_ms(), self.day_ms);
                    let due =
                        rules::current_object(rules, facts.view(&key), r.last_modified_ms, now);
                    if due == CurrentAction::Expire
                        && self
                            .act(versions::expire_current(
                                &self.state,
                                (bucket, versioning),
                                &key,
                                &value,
                            ))
                            .await?
                    {
                        p.expired += 1;
                    }
                }
                p.cursor = key.into_bytes();
            }
            return Ok(page.next.map_or(Step::Done, Step::More));
        }
        // Versioned: key by key; a key whose versions run past this page is read whole.
        let more = page.next.is_some();
        let mut groups: Vec<(String, Vec<MetaValue>)> = Vec::new();
        for (sort_key, value) in page.entries {
            let key = key_of_version_sort_key(&sort_key).to_string();
            match groups.last_mut() {
                Some((k, vs)) if *k == key => vs.push(value),
                _ => groups.push((key, vec![value])),
            }
        }
        let n_groups = groups.len();
        for (i, (key, mut found)) in groups.into_iter().enumerate() {
            if self.out_of_time(stop_at) {
                return Ok(Step::More(p.cursor.clone()));
            }
            if more && i + 1 == n_groups {
                found = versions::all_versions(&self.state, bucket, &key).await?;
            }
            found.retain(MetaValue::is_version);
            p.scanned += found.len() as u64;
            self.versions_of_key(bucket, versioning, &key, &found, rules, p)
                .await?;
            // Past every version of this key: version sort keys are `key\0<hex id>`.
            p.cursor = format!("{key}\0\u{10FFFF}").into_bytes();
        }
        Ok(if more {
            Step::More(p.cursor.clone())
        } else {
            Step::Done
        })
    }

    /// Applies the rules to the versions of one key (newest first).
    async fn versions_of_key(
        &self,
        bucket: &str,
        versioning: Versioning,
        key: &str,
        found: &[MetaValue],
        rules: &[rules::LifecycleRule],
        p: &mut LifecycleProgress,
    ) -> Result<(), GatewayError> {
        let now = (GatewayState::now_ms(), self.day_ms);
        let Some(current) = found.first() else {
            return Ok(());
        };
        match current {
            MetaValue::Object(r) => {
                let facts = self.facts(bucket, key, r, rules).await?;
                let due = rules::current_object(rules, facts.view(key), r.last_modified_ms, now);
                if due == CurrentAction::Expire
                    && self
                        .act(versions::expire_current(
                            &self.state,
                            (bucket, versioning),
                            key,
                            current,
                        ))
                        .await?
                {
                    p.expired += 1;
                }
            }
            MetaValue::DeleteMarker(m)
                if found.len() == 1 && rules::removes_lone_marker(rules, key) =>
            {
                let id = versions::shown(m.version_id.as_deref());
                if self
                    .act(versions::expire_version(
                        &self.state,
                        bucket,
                        key,
                        &id,
                        true,
                    ))
                    .await?
                {
                    p.markers_removed += 1;
                }
            }
            _ => {}
        }
        for (i, version) in found.iter().enumerate().skip(1) {
            let since = written_ms(&found[i - 1]);
            let (size, facts) = match version {
                MetaValue::Object(r) => (r.size_bytes, self.facts(bucket, key, r, rules).await?),
                _ => (0, Facts::default()),
            };
            let view = (key, size, facts.tags.as_deref());
            if rules::noncurrent_expires(rules, view, (since, i as u32 - 1), now) {
                let id = versions::shown(version.version_id());
                if self
                    .act(versions::expire_version(
                        &self.state,
                        bucket,
                        key,
                        &id,
                        false,
                    ))
                    .await?
                {
                    p.noncurrent_expired += 1;
                }
            }
        }
        Ok(())
    }

    /// One page of the walk over the bucket's multipart uploads (until `stop_at`).
    async fn uploads_step(
        &self,
        bucket: &str,
        rules: &[rules::LifecycleRule],
        p: &mut LifecycleProgress,
        stop_at: tokio::time::Instant,
    ) -> Result<Step, GatewayError> {
        let page = meta::scan(
            &self.state,
            &uploads_partition(bucket),
            "",
            &p.cursor,
            MAX_SCAN_ENTRIES,
            meta::Bodies::Without,
        )
        .await?;
        let now = (GatewayState::now_ms(), self.day_ms);
        for (sort_key, value) in page.entries {
            if self.out_of_time(stop_at) {
                return Ok(Step::More(p.cursor.clone()));
            }
            let upload_id = sort_key.split_once('\0').map(|(_, id)| id.to_string());
            p.cursor = sort_key.into_bytes();
            let (MetaValue::Upload(u), Some(upload_id)) = (value, upload_id) else {
                continue;
            };
            if rules::aborts_upload(rules, &u.key, u.initiated_ms, now) {
                let aborted = multipart::abort(&self.state, bucket, &u.key, &upload_id).await;
                self.pause().await;
                match aborted {
                    Ok(()) => p.uploads_aborted += 1,
                    // Completed or aborted meanwhile.
                    Err(GatewayError::NoSuchUpload) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(page.next.map_or(Step::Done, Step::More))
    }

    /// Whether the slice must stop now to record its progress within its lease.
    fn out_of_time(&self, stop_at: tokio::time::Instant) -> bool {
        tokio::time::Instant::now() >= stop_at || self.shutdown.is_cancelled()
    }

    /// What the rules need to know of an object version beyond its key and size: its tags,
    /// read only when some rule filters by tags.
    async fn facts(
        &self,
        bucket: &str,
        key: &str,
        r: &dmpstore_common::record::ObjectRecord,
        rules: &[rules::LifecycleRule],
    ) -> Result<Facts, GatewayError> {
        let tags = if rules::needs_tags(rules) {
            Some(tagging::effective(&self.state, bucket, key, r).await?)
        } else {
            None
        };
        Ok(Facts {
            size_bytes: r.size_bytes,
            tags,
        })
    }

    /// Runs one action and paces the worker after it.
    async fn act(
        &self,
        action: impl std::future::Future<Output = Result<bool, GatewayError>>,
    ) -> Result<bool, GatewayError> {
        let acted = match action.await {
            // A client holds the key's leases: the key is looked at again next pass.
            Err(GatewayError::ConditionalRequestConflict) => Ok(false),
            other => other,
        };
        self.pause().await;
        if let Ok(true) = acted {
            self.state.metrics.lifecycle_actions.inc();
        }
        acted
    }

    /// The worker's deliberate pace between actions (rate limit, not synchronization).
    async fn pause(&self) {
        tokio::select! {
            () = self.shutdown.cancelled() => {}
            () = tokio::time::sleep(self.pace) => {}
        }
    }
}

#[derive(Debug, Default)]
struct Facts {
    size_bytes: u64,
    tags: Option<Vec<(String, String)>>,
}

impl Facts {
    fn view<'a>(&'a self, key: &'a str) -> (&'a str, u64, Option<&'a [(String, String)]>) {
        (key, self.size_bytes, self.tags.as_deref())
    }
}

/// When a version was written: what makes the version before it noncurrent.
fn written_ms(v: &MetaValue) -> u64 {
    match v {
        MetaValue::Object(r) => r.last_modified_ms,
        MetaValue::DeleteMarker(m) => m.deleted_ms,
        _ => 0,
    }
}
