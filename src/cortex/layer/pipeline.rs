//! Writes that are logged but not yet in LMDB: the queue between the callers of
//! [`super::Layer::store`], which work out each write's changes and log it on their own thread,
//! and the layer's applier thread, which applies the logged records to LMDB in batches (one
//! write transaction for all that waited).
//!
//! Until a record is applied, the storage nodes it left are read from here
//! ([`Pipeline::queued`]: the newest queued version of each); index lifts wait for the
//! applier ([`Pipeline::wait_applied`]). The applier takes no lock a writer waits for while
//! it works: it takes the queue's lock only to pick a batch and to note it done, and leaves
//! the queued storage nodes to the writers to drop.

use super::LogPos;
use super::sode::Sode;
use crate::cortex::edits::{Buid, BuidMap, NodeEdit};
use crate::error::{SynErr, SynResult};
use crate::storage::HandedShare;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The most planned writes waiting for the applier before a caller waits for it: bounds the
/// memory of a writer faster than LMDB (a few MB), while leaving room for what a storm
/// ingest queues while the applier waits for a CPU.
const MAX_UNAPPLIED: usize = 1024;

/// Storage nodes by buid as a write left them (`None`: removed).
pub(super) type Sodes = Vec<(Buid, Option<Sode>)>;

/// How many queued writes make the applier start at once, and how long it otherwise lets
/// writes gather so that one commit (with its page copies) serves many: a busy writer queues
/// several a millisecond. A caller waiting for the applier cuts the wait short.
const GATHER: usize = 64;
const GATHER_WAIT: Duration = Duration::from_millis(1);

/// Pauses before the applier tries a failed batch again, and then gives up.
const RETRY_PAUSES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(5),
];

/// One planned write: logged records waiting to be applied to LMDB.
pub(super) struct Planned {
    /// Each record's applied nodeedits, in log order (shared with the writer's result).
    pub records: Vec<Arc<Vec<NodeEdit>>>,
    /// New entries of the sparse log position index.
    pub indexed: Vec<(u64, LogPos)>,
    /// The offset after the last record.
    pub next: u64,
    /// The planner's share of the write gate, left once the records are in LMDB: a backup's
    /// snapshot point never falls between a record logged and applied.
    pub share: Option<HandedShare>,
}

#[derive(Default)]
struct State {
    /// Planned writes not yet committed to LMDB, oldest first.
    jobs: VecDeque<Arc<Planned>>,
    /// Why the applier stopped applying (the layer refuses writes until reopened).
    failed: Option<String>,
    stop: bool,
    /// The storage nodes the last LMDB commit wrote, as LMDB holds them.
    recent: Sodes,
    /// LMDB commits so far, so a flush can tell whether a commit raced it.
    commits: u64,
    /// Callers waiting for the applier (it does not let writes gather meanwhile).
    waiting: usize,
}

/// The storage nodes queued writes left: the newest version of each buid, with the offset
/// after the write that left it. Entries of committed writes are dropped by the writers (in
/// [`Pipeline::push`] and [`Pipeline::wait_applied`]), never by the applier: a writer then
/// never waits for a lock the applier holds.
#[derive(Default)]
struct Overlay {
    latest: BuidMap<(u64, Option<Sode>)>,
    /// The buids each queued write left here, oldest write first, by the offset after it.
    writes: VecDeque<(u64, Vec<Buid>)>,
}

/// Where the storage node of a buid is, for a read snapshot opened after a given
/// [`Pipeline::generation`].
pub(super) enum Queued {
    /// A queued write left it so (`None`: removed); no snapshot has a newer one.
    Sode(Option<Sode>),
    /// The snapshot holds it as it is.
    Stored,
    /// Writes committed since the snapshot was opened have left the overlay: read a newer
    /// snapshot.
    Behind,
}

/// The queue of planned writes and the applier's progress.
#[derive(Default)]
pub(super) struct Pipeline {
    state: Mutex<State>,
    /// How many planned writes `state` holds (read without its lock).
    queue_len: AtomicUsize,
    /// The offset after the last write the applier committed to LMDB.
    committed: AtomicU64,
    /// The storage nodes the queued writes leave (never locked together with `state`).
    overlay: Mutex<Overlay>,
    /// Moves on (under the overlay's lock) whenever entries of committed writes leave the
    /// overlay: a read snapshot opened before may lack those writes, so a buid missing from
    /// the overlay is read from a fresh snapshot then.
    generation: AtomicU64,
    /// Wakes the applier.
    work: Condvar,
    /// Wakes callers waiting for the applier.
    done: Condvar,
}

impl Pipeline {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.done
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait while the queue is full (call before planning, holding no write gate share: the
    /// applier may need the gate to make room).
    pub(super) fn wait_room(&self) {
        if self.queue_len.load(Ordering::Acquire) < MAX_UNAPPLIED {
            return;
        }
        let mut state = self.state();
        while state.jobs.len() >= MAX_UNAPPLIED && state.failed.is_none() && !state.stop {
            state = self.wait(state);
        }
    }

    fn overlay(&self) -> MutexGuard<'_, Overlay> {
        self.overlay.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue a planned write for the applier, with the storage nodes it leaves.
    pub(super) fn push(&self, job: Planned, sodes: Sodes) {
        // Readable before the applier can commit the write.
        let mut overlay = self.overlay();
        let dropped = self.prune(&mut overlay);
        let buids = sodes.iter().map(|(buid, _)| *buid).collect();
        overlay.writes.push_back((job.next, buids));
        for (buid, sode) in sodes {
            overlay.latest.insert(buid, (job.next, sode));
        }
        drop(overlay);
        drop(dropped);
        let mut state = self.state();
        state.jobs.push_back(Arc::new(job));
        self.queue_len.store(state.jobs.len(), Ordering::Release);
        // The applier waits for a first write, or lets writes gather up to `GATHER`.
        if state.jobs.len() == 1 || state.jobs.len() >= GATHER {
            self.work.notify_one();
        }
    }

    /// Take before opening a read snapshot: [`Pipeline::queued`] tells whether it went stale.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Where the storage node of `buid` is for a snapshot opened after generation `since`.
    pub(super) fn queued(&self, buid: &Buid, since: u64) -> Queued {
        let overlay = self.overlay();
        match overlay.latest.get(buid) {
            Some((_, sode)) => Queued::Sode(sode.clone()),
            None if self.generation() == since => Queued::Stored,
            None => Queued::Behind,
        }
    }

    /// Drop the overlay's entries of committed writes (moving the generation on if any
    /// went); they are returned, to be freed once the lock is let go.
    fn prune(&self, overlay: &mut Overlay) -> Vec<(u64, Option<Sode>)> {
        let through = self.committed.load(Ordering::Acquire);
        let mut dropped = Vec::new();
        while let Some((next, _)) = overlay.writes.front()
            && *next <= through
        {
            let Some((_, buids)) = overlay.writes.pop_front() else {
                break;
            };
            for buid in buids {
                if overlay
                    .latest
                    .get(&buid)
                    .is_some_and(|(n, _)| *n <= through)
                {
                    dropped.extend(overlay.latest.remove(&buid));
                }
            }
        }
        if !dropped.is_empty() {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        dropped
    }

    /// Wait until every write queued before this call is in LMDB (later ones do not hold it
    /// up); the applier's error if it failed. The overlay then holds no storage node of
    /// those writes: a write made after reading LMDB itself is not hidden by an older one.
    pub(super) fn wait_applied(&self) -> SynResult<()> {
        let mut state = self.state();
        if let Some(target) = state.jobs.back().map(|job| job.next) {
            loop {
                if let Some(why) = &state.failed {
                    return Err(SynErr::new("StorageError", why.clone()));
                }
                if state.jobs.front().is_none_or(|job| job.next > target) {
                    break;
                }
                state = self.wait(state);
            }
        }
        drop(state);
        let mut overlay = self.overlay();
        let dropped = self.prune(&mut overlay);
        drop(overlay);
        drop(dropped);
        Ok(())
    }

    /// Why the applier failed, if it did.
    pub(super) fn failed(&self) -> Option<String> {
        self.state().failed.clone()
    }

    /// Whether nothing waits for the applier, and the LMDB commits so far.
    pub(super) fn idle_commits(&self) -> (bool, u64) {
        let state = self.state();
        (state.jobs.is_empty(), state.commits)
    }

    /// Take the storage nodes the last commit wrote (for a writer that has waited for the
    /// applier: nothing else commits meanwhile).
    pub(super) fn take_recent(&self) -> Sodes {
        std::mem::take(&mut self.state().recent)
    }

    /// Note a commit made outside the applier and the storage nodes it wrote.
    pub(super) fn committed(&self, recent: Sodes) {
        let mut state = self.state();
        state.recent = recent;
        state.commits += 1;
    }

    /// Note a commit made outside the applier that may have changed any storage node.
    pub(super) fn count_commit(&self) {
        self.committed(Vec::new());
    }

    /// Let the applier finish what is queued and end.
    pub(super) fn stop(&self) {
        self.state().stop = true;
        self.work.notify_all();
        self.done.notify_all();
    }

    /// The next batch: everything queued, once `GATHER` writes are or `GATHER_WAIT` has
    /// passed since the first (at once when a caller waits); `None` once stopped with
    /// nothing queued.
    fn next_batch(&self) -> Option<(Vec<Arc<Planned>>, Sodes)> {
        let mut state = self.state();
        let mut gathered = false;
        loop {
            if !state.jobs.is_empty() && state.failed.is_none() {
                let now = gathered || state.waiting > 0 || state.stop;
                if now || state.jobs.len() >= GATHER {
                    let batch = state.jobs.iter().cloned().collect();
                    return Some((batch, std::mem::take(&mut state.recent)));
                }
                state = self
                    .work
                    .wait_timeout(state, GATHER_WAIT)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                gathered = true;
                continue;
            }
            if state.stop {
                return None;
            }
            state = self
                .work
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Record the outcome of applying `batch`, the oldest queued writes.
    fn finished(&self, batch: &[Arc<Planned>], outcome: SynResult<Sodes>) {
        let mut state = self.state();
        match outcome {
            Ok(recent) => {
                if let Some(last) = batch.last() {
                    self.committed.store(last.next, Ordering::Release);
                }
                state.jobs.drain(..batch.len());
                self.queue_len.store(state.jobs.len(), Ordering::Release);
                let old = std::mem::replace(&mut state.recent, recent);
                state.commits += 1;
                drop(state);
                // Freed once the lock is let go: writers wait for it.
                drop(old);
            }
            Err(err) => state.failed = Some(err.mesg().to_owned()),
        }
        self.done.notify_all();
    }
}

/// Start the applier thread: it hands each batch of queued writes, with the storage nodes the
/// previous commit wrote, to `apply`, which commits them to LMDB and returns the storage nodes
/// it wrote. A batch that still fails after [`RETRY_PAUSES`] stops it: nothing more is
/// applied (the records stay in the log and are applied when the layer is opened again).
pub(super) fn spawn_applier(
    pipeline: Arc<Pipeline>,
    name: &str,
    mut apply: impl FnMut(&[Arc<Planned>], Sodes) -> SynResult<Sodes> + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while let Some((batch, recent)) = pipeline.next_batch() {
                // Inside the planners' shares: a pending hold waits for this batch.
                let inside = batch.iter().find_map(|job| job.share.as_ref().map(HandedShare::adopt));
                let mut outcome = apply(&batch, recent);
                // A failed transaction changed nothing: try again after a pause, for what
                // passes (the map could not grow while long reads were open).
                for pause in RETRY_PAUSES {
                    let Err(err) = &outcome else { break };
                    tracing::warn!(%err, "applying logged edits to LMDB failed; trying again");
                    std::thread::sleep(pause);
                    outcome = apply(&batch, Vec::new());
                }
                drop(inside);
                if let Err(err) = &outcome {
                    tracing::error!(%err, "applying logged edits to LMDB failed; the layer refuses writes until reopened");
                }
                pipeline.finished(&batch, outcome);
            }
        })
}
