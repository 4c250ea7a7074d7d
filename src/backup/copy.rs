//! `syn backup SRCDIR DSTDIR`: the copy itself.
//!
//! By default every environment is copied as `mdb_copy -c` copies it, by the page walk of
//! [`CompactSnapshot`]: a worker reads the snapshot's pages into 1 MiB buffers and hashes each
//! full one, while writer threads put earlier buffers on disk with O_DIRECT (as `mdb_copy`
//! does: the copy goes straight to the disk and does not push the service's pages out of the
//! page cache; unlike `mdb_copy`, several writes are in flight at once, into a file allocated
//! to the copy's exact size beforehand). With `--rebuild`, an environment that holds only
//! named databases (every syn and Python Synapse 2.x slab) is rebuilt instead: its records are
//! written again in key order into a new environment from one read snapshot
//! ([`RebuildSnapshot`]), which fills every page, and the file is hashed and fsynced after.
//! For a live backup every environment's read snapshot begins while the service's writes are
//! held, and the hold is released as soon as all have begun: from then on the copies read their snapshots while the
//! service writes on. Under `--limit-rate` every chunk of a compacting copy or a file, and
//! every transaction of a rebuild, waits for its turn at the shared [`RateLimit`].

use super::fsutil::{
    Aligned, DIRECT_ALIGN, DirLock, DirUse, Hasher, HashingWriter, Written, claim_service_dir,
    create_new, free_space, hash_file, parent_of, remove_as_partial, set_direct, sync_dir,
    with_suffix, write_failure,
};
use super::limit::RateLimit;
use super::live::LiveHold;
use super::manifest::{EnvEntry, FileEntry, HashKind, LogEntry, Manifest, Service, Unreadable};
use super::plan::{Plan, is_skipped, layout_kind};
use super::report::{Progress, Reporter};
use super::{Exit, Failure, PARTIAL_SUFFIX, human_bytes};
use crate::cell::SYN_VERSION;
use crate::cell::dir::GUID_FILE;
use crate::clock::{now_ms, utc_string};
use crate::storage::{CompactSnapshot, CopySink, RebuildSnapshot, Slab};
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How often blocked workers and the main loop look for an interruption or a deadline.
const TICK: Duration = Duration::from_millis(100);
/// The most threads that fsync the backup's directories at once.
const SYNC_THREADS: usize = 16;
/// Chunks in flight per environment: one being filled, others being hashed or written.
const CHUNKS_IN_FLIGHT: usize = 8;
/// Threads writing one environment's copy to disk: several writes in flight keep a disk
/// busier than one at a time (`mdb_copy` writes one at a time).
const DISK_WRITERS: usize = 4;
/// Room asked for beyond the estimate: estimates of duplicate-heavy databases run low.
const SPACE_MARGIN_DIVISOR: u64 = 20;

/// The environment variable that turns `--rebuild` on for every backup (`1`, `true`, `yes`,
/// `on`) or leaves it off (`0`, `false`, `no`, `off`, empty or unset).
pub const REBUILD_ENV: &str = "SYN_BACKUP_REBUILD";

/// Whether [`REBUILD_ENV`] asks for rebuilt environments.
pub fn rebuild_from_env() -> Result<bool, String> {
    let text = std::env::var(REBUILD_ENV).unwrap_or_default();
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!(
            "{REBUILD_ENV}: {other:?} is neither on (1, true, yes) nor off (0, false, no)"
        )),
    }
}

/// What to back up, where, and within which limits.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// The service directory.
    pub src: PathBuf,
    /// Where the backup goes; must not exist.
    pub dst: PathBuf,
    /// Stop (and leave nothing) if the backup runs longer than this.
    pub max_duration: Option<Duration>,
    /// The longest the running service may hold writes for the snapshot point.
    pub hold_timeout: Duration,
    /// Files and environments copied at once.
    pub parallel: usize,
    /// Verify the backup after writing it (and record that it was verified).
    pub verify: bool,
    /// The most bytes a second the copies may move together (`--limit-rate`); none if `None`.
    pub limit_rate: Option<u64>,
    /// How the manifest digests each file (`--digest`; BLAKE3 unless SHA-256 is asked for).
    pub digest: HashKind,
    /// Rebuild every environment that can be (`--rebuild`): a smaller copy for more CPU time.
    pub rebuild: bool,
}

/// A finished backup.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Where it is.
    pub dst: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// `Ok`, or `PartlyUnreadable` when some source files could not be read.
    pub exit: Exit,
    /// Whether it was verified after writing.
    pub verified: bool,
}

/// Back up `opts.src` into `opts.dst`. `interrupted` is set by a signal handler; the backup
/// then stops and leaves nothing behind.
pub fn backup(
    opts: &BackupOptions,
    reporter: &mut Reporter,
    interrupted: &AtomicBool,
) -> Result<Outcome, Failure> {
    let started = Instant::now();
    let started_ms = now_ms();
    let src = match opts.src.canonicalize() {
        Ok(p) if p.is_dir() => p,
        Ok(p) => {
            return Err(Failure::new(
                Exit::NoSuchSource,
                format!("{}: not a directory", p.display()),
            ));
        }
        Err(e) => {
            return Err(Failure::new(
                Exit::NoSuchSource,
                format!("{}: {e}", opts.src.display()),
            ));
        }
    };
    let dst = absolute(&opts.dst)?;
    if fs::symlink_metadata(&dst).is_ok() {
        return Err(Failure::new(
            Exit::DestinationExists,
            format!("{} already exists; choose a new name", dst.display()),
        ));
    }
    let dst_parent = parent_of(&dst)
        .canonicalize()
        .map_err(|e| Failure::failed(format!("{}: {e}", parent_of(&dst).display())))?;
    let dst_name = dst
        .file_name()
        .ok_or_else(|| Failure::failed(format!("{}: not a directory name", dst.display())))?;
    let dst = dst_parent.join(dst_name);
    if let Ok(inside) = dst.strip_prefix(&src)
        && !is_skipped(inside)
    {
        return Err(Failure::failed(format!(
            "{} lies inside the source {} (only its tmp/ and backups/ are left out)",
            dst.display(),
            src.display()
        )));
    }
    let partial = with_suffix(&dst, PARTIAL_SUFFIX);
    clear_stale_partial(&partial, reporter)?;

    let _source_lock = DirLock::try_take(&src)
        .map_err(|e| Failure::failed(format!("{}: cannot lock: {e}", src.display())))?
        .ok_or_else(|| {
            Failure::new(
                Exit::Locked,
                format!("another backup or restore of {} is running", src.display()),
            )
        })?;
    let dir_use = claim_service_dir(&src, false)
        .map_err(|e| Failure::failed(format!("{}: {e}", src.join(GUID_FILE).display())))?;
    let (live, _guard) = match dir_use {
        DirUse::Syn => (true, None),
        DirUse::Foreign => {
            return Err(Failure::new(
                Exit::Locked,
                format!(
                    "{} is in use by a running service that is not syn (Python Synapse?): stop \
                     it first, or back it up with its own tool",
                    src.display()
                ),
            ));
        }
        DirUse::Stopped(guard) => (false, guard),
    };

    let plan = Plan::of(&src)?;
    let mut envs = BTreeMap::new();
    for rel in &plan.envs {
        envs.insert(rel.clone(), Slab::open_readonly(src.join(rel))?);
    }
    let estimate = estimate_bytes(&plan, &envs)?;
    let need = estimate + estimate / SPACE_MARGIN_DIVISOR;
    let free = free_space(&dst_parent)
        .map_err(|e| Failure::failed(format!("{}: {e}", dst_parent.display())))?;
    if free < need {
        return Err(Failure::new(
            Exit::NoSpace,
            format!(
                "not enough space at {}: the backup needs about {}, {} is free",
                dst_parent.display(),
                human_bytes(need),
                human_bytes(free)
            ),
        ));
    }
    let source_bytes = plan.source_bytes(&src);

    fs::create_dir(&partial)
        .map_err(|e| write_failure(&partial, "creating the backup directory", e))?;
    let partial_lock = DirLock::try_take(&partial)
        .ok()
        .flatten()
        .ok_or_else(|| Failure::failed(format!("{}: cannot lock", partial.display())))?;
    let mut run = Run {
        src: src.clone(),
        partial: partial.clone(),
        plan,
        envs,
        estimate,
        interrupted,
        deadline: opts.max_duration.map(|d| (started + d, d)),
    };
    let result = run.copy_all(opts, live, reporter, started_ms, source_bytes);
    match result {
        Ok(mut manifest) => {
            manifest.finished_ms = now_ms();
            run.seal(&manifest)?;
            fs::rename(&partial, &dst)
                .map_err(|e| Failure::failed(format!("{}: rename: {e}", partial.display())))?;
            sync_dir(&dst_parent).map_err(|e| write_failure(&dst_parent, "syncing", e))?;
            drop(partial_lock);
            let exit = if manifest.unreadable.is_empty() {
                Exit::Ok
            } else {
                Exit::PartlyUnreadable
            };
            let verified = if opts.verify {
                super::verify::verify(&dst, reporter, interrupted)?;
                true
            } else {
                false
            };
            let outcome = Outcome {
                dst,
                manifest,
                exit,
                verified,
            };
            report_summary(reporter, &outcome, opts.limit_rate, started.elapsed());
            Ok(outcome)
        }
        Err(failure) => {
            drop(run);
            drop(partial_lock);
            if let Err(e) = remove_as_partial(&partial) {
                reporter.notice(&format!("could not remove {}: {e}", partial.display()));
            }
            Err(failure)
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf, Failure> {
    std::path::absolute(path).map_err(|e| Failure::failed(format!("{}: {e}", path.display())))
}

/// A `.partial` left by a run that did not finish is removed; one being written is not.
fn clear_stale_partial(partial: &Path, reporter: &mut Reporter) -> Result<(), Failure> {
    if fs::symlink_metadata(partial).is_err() {
        return Ok(());
    }
    match DirLock::try_take(partial) {
        // Released before the removal, which takes it again.
        Ok(Some(_stale)) => {}
        Ok(None) => {
            return Err(Failure::new(
                Exit::Locked,
                format!("a backup into {} is running", partial.display()),
            ));
        }
        Err(e) => return Err(Failure::failed(format!("{}: {e}", partial.display()))),
    }
    reporter.notice(&format!(
        "removing {}, left by a backup that did not finish",
        partial.display()
    ));
    remove_as_partial(partial).map_err(|e| Failure::failed(format!("{}: {e}", partial.display())))
}

/// Bytes the backup will write: every environment's pages in use and every file.
fn estimate_bytes(plan: &Plan, envs: &BTreeMap<String, Slab>) -> Result<u64, Failure> {
    let mut total: u64 = plan.files.iter().map(|(_, size)| size).sum();
    for slab in envs.values() {
        let stats = slab.stats()?;
        total += stats.used_pages * u64::from(stats.page_size);
    }
    Ok(total)
}

/// One backup in progress.
struct Run<'a> {
    src: PathBuf,
    partial: PathBuf,
    plan: Plan,
    envs: BTreeMap<String, Slab>,
    estimate: u64,
    interrupted: &'a AtomicBool,
    deadline: Option<(Instant, Duration)>,
}

/// An environment's copy, its read snapshot begun at the snapshot point or when a worker
/// takes it up.
enum EnvCopy {
    /// Written again in key order from a read snapshot; `expected` is its size as the
    /// environment's page counts estimate it.
    Rebuild {
        snapshot: RebuildSnapshot,
        expected: u64,
    },
    /// Its pages copied as they are, renumbered, without the free ones.
    Compact(CompactSnapshot),
}

/// Begin the copy of `slab`: its rebuild snapshot if `rebuild` is asked for and the
/// environment can be rebuilt, else its compacted copy's.
fn begin_copy(slab: &Slab, rebuild: bool) -> Result<EnvCopy, Failure> {
    if rebuild {
        // Its size is read first: once its snapshot is open, a new transaction on the
        // environment could have to wait for that snapshot to end (when the service has grown
        // the map meanwhile).
        let stats = slab.stats()?;
        if let Some(snapshot) = slab.rebuild_snapshot()? {
            return Ok(EnvCopy::Rebuild {
                snapshot,
                expected: stats.used_pages * u64::from(stats.page_size),
            });
        }
    }
    Ok(EnvCopy::Compact(slab.compact_snapshot()?))
}

/// Let the running service come first: every thread of this process gets the CPU only when
/// no other thread wants it (`SCHED_IDLE`, which a waking service thread preempts at once) and
/// the disk only when nothing else uses it (the idle I/O class); threads started later inherit
/// both. Called once the service's writes are released, never before: a backup that holds the
/// writes must get the CPU to begin its snapshots, or the service waits on it. Best effort:
/// where the kernel refuses, the backup runs as it is.
fn yield_to_service() {
    const IOPRIO_WHO_PROCESS: nix::libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: nix::libc::c_long = 3;
    let threads: Vec<nix::libc::pid_t> = fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| task.file_name().to_str()?.parse().ok())
        .collect();
    let param = nix::libc::sched_param { sched_priority: 0 };
    for tid in threads {
        // SAFETY: plain system calls about one thread of this process (on Linux both take a
        // thread id); `param` outlives the call.
        unsafe {
            nix::libc::sched_setscheduler(tid, nix::libc::SCHED_IDLE, &param);
            nix::libc::syscall(
                nix::libc::SYS_ioprio_set,
                IOPRIO_WHO_PROCESS,
                nix::libc::c_long::from(tid),
                IOPRIO_CLASS_IDLE << 13,
            );
        }
    }
}

/// A chunk of a copy on its way to the disk: an O_DIRECT buffer, how much of it is filled and
/// where in the file it goes.
struct Chunk {
    buffer: Aligned,
    len: usize,
    offset: u64,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk {
            buffer: Aligned::new(),
            len: 0,
            offset: 0,
        }
    }

    fn filled(&mut self) -> &[u8] {
        &self.buffer.get()[..self.len]
    }
}

impl AsMut<[u8]> for Chunk {
    fn as_mut(&mut self) -> &mut [u8] {
        self.buffer.get()
    }
}

/// Allocate `len` bytes of `file` (a new, empty file) where the file system can; only a
/// lack of room is an error.
fn allocate(file: &File, len: u64) -> io::Result<()> {
    use nix::fcntl::{FallocateFlags, fallocate};
    let Ok(len) = i64::try_from(len) else {
        return Ok(());
    };
    if len == 0 {
        return Ok(());
    }
    match fallocate(file, FallocateFlags::empty(), 0, len) {
        Err(e @ (nix::errno::Errno::ENOSPC | nix::errno::Errno::EDQUOT)) => Err(e.into()),
        Ok(()) | Err(_) => Ok(()),
    }
}

/// A writer thread of [`Worker::compact`]: write each full chunk at its offset until there are
/// no more, and hand the empty buffer back. A chunk that is not whole blocks (the end of the
/// copy) turns O_DIRECT off for the file. The first writer that fails sets `failed`, and
/// the others stop too, so the hasher finds every writer gone.
fn write_chunks(
    file: &File,
    mut direct: bool,
    full: &Mutex<mpsc::Receiver<Chunk>>,
    empty: &mpsc::Sender<Chunk>,
    failed: &AtomicBool,
) -> io::Result<()> {
    loop {
        let next = full.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(mut chunk) = next else {
            return Ok(());
        };
        if failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        if direct && chunk.len % DIRECT_ALIGN != 0 {
            direct = !set_direct(file, false);
        }
        let offset = chunk.offset;
        if let Err(e) = file.write_all_at(chunk.filled(), offset) {
            failed.store(true, Ordering::SeqCst);
            return Err(e);
        }
        let _ = empty.send(chunk);
    }
}

/// What one worker finished.
enum Done {
    File(FileEntry),
    Env(EnvEntry, FileEntry),
    Log(LogEntry, FileEntry),
    Unreadable(Unreadable),
    Vanished(String),
}

enum Job {
    Env(String, Arc<Mutex<Option<EnvCopy>>>, Slab),
    File(String),
    Log(String, u64),
}

enum Event {
    Bytes(u64),
    Done(Done),
    Failed(Failure),
}

impl Run<'_> {
    fn stop_reason(&self) -> Option<Failure> {
        if self.interrupted.load(Ordering::SeqCst) {
            return Some(Failure::new(
                Exit::Interrupted,
                "interrupted; nothing was kept",
            ));
        }
        match self.deadline {
            Some((at, limit)) if Instant::now() >= at => Some(Failure::new(
                Exit::TooLong,
                format!(
                    "stopped after --max-duration {}s; nothing was kept",
                    limit.as_secs()
                ),
            )),
            _ => None,
        }
    }

    fn copy_all(
        &mut self,
        opts: &BackupOptions,
        live: bool,
        reporter: &mut Reporter,
        started_ms: i64,
        source_bytes: u64,
    ) -> Result<Manifest, Failure> {
        for rel in &self.plan.dirs {
            let dir = self.partial.join(rel);
            fs::create_dir(&dir).map_err(|e| write_failure(&dir, "creating directories", e))?;
            if let Ok(meta) = fs::metadata(self.src.join(rel)) {
                let _ = fs::set_permissions(&dir, meta.permissions());
            }
        }
        for link in &self.plan.symlinks {
            let at = self.partial.join(&link.path);
            std::os::unix::fs::symlink(&link.target, &at)
                .map_err(|e| write_failure(&at, "creating links", e))?;
        }
        let mut files: Vec<String> = self.plan.files.iter().map(|(f, _)| f.clone()).collect();
        let mut logs: Vec<(String, u64)> = Vec::new();
        let mut started: BTreeMap<String, EnvCopy> = BTreeMap::new();
        let mut service = Service {
            kind: layout_kind(&self.src).to_owned(),
            iden: fs::read_to_string(self.src.join(GUID_FILE))
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
        };
        let mut snapshot_ms = started_ms;
        let mut held_ms = None;
        if live {
            let (hold, point) = LiveHold::take(&self.src, opts.hold_timeout)?;
            service = Service {
                kind: point.kind.clone(),
                iden: Some(point.iden.clone()),
            };
            snapshot_ms = point.time_ms;
            // Environments the service opened since the listing, then those it removed.
            for rel in &point.envs {
                if !self.envs.contains_key(rel) && !is_skipped(Path::new(rel)) {
                    let slab = Slab::open_readonly(self.src.join(rel))?;
                    let dir = self.partial.join(rel);
                    fs::create_dir_all(&dir)
                        .map_err(|e| write_failure(&dir, "creating directories", e))?;
                    self.envs.insert(rel.clone(), slab);
                }
            }
            self.envs
                .retain(|rel, _| self.src.join(rel).join("data.mdb").is_file());
            // Every snapshot begins here; on a failure those begun end as they are dropped.
            for (rel, slab) in &self.envs {
                started.insert(rel.clone(), begin_copy(slab, opts.rebuild)?);
            }
            let held = hold.release()?;
            held_ms = Some(held.as_millis() as u64);
            yield_to_service();
            for (rel, length) in point.logs {
                if is_skipped(Path::new(&rel)) {
                    continue;
                }
                files.retain(|f| *f != rel);
                logs.push((rel, length));
            }
            reporter.event(
                "snapshot",
                json!({ "mode": "live", "held_ms": held_ms, "envs": self.envs.len() }),
            );
        } else {
            reporter.event(
                "snapshot",
                json!({ "mode": "offline", "envs": self.envs.len() }),
            );
        }

        let mut queue = VecDeque::new();
        for (rel, slab) in &self.envs {
            let copy = Arc::new(Mutex::new(started.remove(rel)));
            queue.push_back(Job::Env(rel.clone(), copy, slab.clone()));
        }
        queue.extend(files.into_iter().map(Job::File));
        queue.extend(logs.into_iter().map(|(rel, len)| Job::Log(rel, len)));
        let done = self.run_jobs(queue, opts, reporter)?;

        let mut manifest = Manifest {
            format: super::manifest::format_of(opts.digest),
            syn_version: SYN_VERSION.to_owned(),
            source: self.src.to_string_lossy().into_owned(),
            mode: if live { "live" } else { "offline" }.to_owned(),
            service,
            started_ms,
            snapshot_ms,
            finished_ms: 0,
            taken: utc_string(snapshot_ms),
            held_ms,
            source_bytes,
            source_growth: self
                .plan
                .source_bytes(&self.src)
                .saturating_sub(source_bytes),
            dirs: self.plan.dirs.clone(),
            files: Vec::new(),
            envs: Vec::new(),
            logs: Vec::new(),
            symlinks: self.plan.symlinks.clone(),
            unreadable: self.plan.unreadable.clone(),
        };
        for item in done {
            match item {
                Done::File(f) => manifest.files.push(f),
                Done::Env(env, f) => {
                    manifest.files.push(f);
                    manifest.envs.push(env);
                }
                Done::Log(log, f) => {
                    manifest.files.push(f);
                    manifest.logs.push(log);
                }
                Done::Unreadable(u) => manifest.unreadable.push(u),
                Done::Vanished(rel) => {
                    reporter.notice(&format!("{rel} was removed during the backup; skipped"))
                }
            }
        }
        manifest.files.sort_by(|a, b| a.path.cmp(&b.path));
        manifest.envs.sort_by(|a, b| a.path.cmp(&b.path));
        manifest.logs.sort_by(|a, b| a.path.cmp(&b.path));
        manifest.unreadable.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(manifest)
    }

    /// Run the jobs on `parallel` workers, reporting progress, until all are done or one
    /// fails (or the run is interrupted or too long).
    fn run_jobs(
        &self,
        queue: VecDeque<Job>,
        opts: &BackupOptions,
        reporter: &mut Reporter,
    ) -> Result<Vec<Done>, Failure> {
        let limit = opts.limit_rate.map(|rate| Arc::new(RateLimit::new(rate)));
        let envs_total = queue.iter().filter(|j| matches!(j, Job::Env(..))).count();
        let mut progress = Progress {
            bytes_done: 0,
            bytes_total: self.estimate,
            envs_done: 0,
            envs_total,
        };
        reporter.start_progress("backup", progress);
        let queue = Arc::new(Mutex::new(queue));
        let abort = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let mut workers = Vec::new();
        for _ in 0..opts.parallel.max(1) {
            let worker = Worker {
                src: self.src.clone(),
                partial: self.partial.clone(),
                queue: queue.clone(),
                abort: abort.clone(),
                events: tx.clone(),
                limit: limit.clone(),
                digest: opts.digest,
                rebuild: opts.rebuild,
            };
            let spawned = thread::Builder::new()
                .name("backup-worker".into())
                .spawn(move || worker.run());
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(e) => {
                    abort.store(true, Ordering::SeqCst);
                    drop(tx);
                    let mut wait = || {
                        for w in workers.drain(..) {
                            let _ = w.join();
                        }
                    };
                    wait();
                    return Err(Failure::failed(format!("cannot start a worker: {e}")));
                }
            }
        }
        drop(tx);
        let mut done = Vec::new();
        let mut failure: Option<Failure> = None;
        loop {
            match rx.recv_timeout(TICK) {
                Ok(Event::Bytes(n)) => {
                    progress.bytes_done += n;
                    reporter.progress(progress);
                }
                Ok(Event::Done(d)) => {
                    if matches!(d, Done::Env(..)) {
                        progress.envs_done += 1;
                        reporter.progress(progress);
                    }
                    done.push(d);
                }
                Ok(Event::Failed(f)) => {
                    failure.get_or_insert(f);
                    abort.store(true, Ordering::SeqCst);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if failure.is_none()
                && let Some(stop) = self.stop_reason()
            {
                failure = Some(stop);
                abort.store(true, Ordering::SeqCst);
            }
        }
        for w in workers {
            let _ = w.join();
        }
        // Snapshots no worker got to (a live run stopped early) end here.
        queue.lock().unwrap_or_else(PoisonError::into_inner).clear();
        reporter.finish_progress(progress);
        match failure {
            Some(f) => Err(f),
            None => Ok(done),
        }
    }

    /// Make the backup durable before it is renamed into place: write the manifest while
    /// every directory in the backup is fsynced (all at once, so the file system commits them
    /// together), then fsync the backup's own directory. Every file was fsynced as it was
    /// closed.
    fn seal(&self, manifest: &Manifest) -> Result<(), Failure> {
        let mut dirs: Vec<PathBuf> = manifest
            .dirs
            .iter()
            .chain(manifest.envs.iter().map(|e| &e.path))
            .map(|d| self.partial.join(d))
            .collect();
        dirs.sort();
        dirs.dedup();
        let per_thread = dirs.len().div_ceil(SYNC_THREADS).max(1);
        thread::scope(|scope| {
            let syncs: Vec<_> = dirs
                .chunks(per_thread)
                .map(|chunk| {
                    scope.spawn(move || {
                        for dir in chunk {
                            sync_dir(dir)
                                .map_err(|e| write_failure(dir, "syncing directories", e))?;
                        }
                        Ok(())
                    })
                })
                .collect();
            let mut sealed = manifest.write(&self.partial);
            for sync in syncs {
                let synced = sync
                    .join()
                    .unwrap_or_else(|_| Err(Failure::failed("a directory sync panicked")));
                sealed = sealed.and(synced);
            }
            sealed
        })?;
        sync_dir(&self.partial).map_err(|e| write_failure(&self.partial, "syncing", e))
    }
}

/// One of the threads that copy files and environments.
struct Worker {
    src: PathBuf,
    partial: PathBuf,
    queue: Arc<Mutex<VecDeque<Job>>>,
    abort: Arc<AtomicBool>,
    events: mpsc::Sender<Event>,
    limit: Option<Arc<RateLimit>>,
    digest: HashKind,
    rebuild: bool,
}

impl Worker {
    fn run(self) {
        loop {
            if self.abort.load(Ordering::SeqCst) {
                return;
            }
            let job = self
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            let Some(job) = job else { return };
            let result = match job {
                Job::Env(rel, copy, slab) => self.env(rel, copy, &slab),
                Job::File(rel) => self.file(rel),
                Job::Log(rel, length) => self.log(rel, length),
            };
            let event = match result {
                Ok(done) => Event::Done(done),
                Err(f) => Event::Failed(f),
            };
            let failed = matches!(event, Event::Failed(_));
            if self.events.send(event).is_err() || failed {
                return;
            }
        }
    }

    fn aborted(&self) -> Failure {
        Failure::failed("stopped")
    }

    /// Wait, under `--limit-rate`, until `bytes` more may be copied.
    fn pace(&self, bytes: u64) -> Result<(), Failure> {
        let Some(limit) = &self.limit else {
            return Ok(());
        };
        let mut wait = limit.take(bytes);
        while !wait.is_zero() {
            if self.abort.load(Ordering::SeqCst) {
                return Err(self.aborted());
            }
            let nap = wait.min(TICK);
            thread::sleep(nap);
            wait -= nap;
        }
        Ok(())
    }

    /// Copy an environment into `data.mdb` of the backup, from the snapshot begun at the
    /// snapshot point or else from one begun now, and record its digest and entry counts.
    fn env(
        &self,
        rel: String,
        copy: Arc<Mutex<Option<EnvCopy>>>,
        slab: &Slab,
    ) -> Result<Done, Failure> {
        let dir = self.partial.join(&rel);
        let dst = dir.join("data.mdb");
        let already = copy.lock().unwrap_or_else(PoisonError::into_inner).take();
        let copy = match already {
            Some(copy) => copy,
            None => begin_copy(slab, self.rebuild)?,
        };
        let written = match copy {
            EnvCopy::Rebuild { snapshot, expected } => self.rebuild(snapshot, &dir, expected)?,
            EnvCopy::Compact(snapshot) => self.compact(snapshot, &dst)?,
        };
        if let Ok(meta) = fs::metadata(self.src.join(&rel).join("data.mdb")) {
            let _ = fs::set_permissions(&dst, meta.permissions());
        }
        // The copy's own counts: the snapshot it holds, whatever the source did since.
        let copy = Slab::open_snapshot(&dir)?;
        let dbs = copy.stats()?.dbs;
        drop(copy);
        let path = format!("{rel}/data.mdb");
        Ok(Done::Env(EnvEntry { path: rel, dbs }, entry(path, written)))
    }

    /// Write the rebuilt environment into `dir` (paced and reported at each of its commits),
    /// fsync it and hash it. Progress reaches `expected` (what the estimate counted for it).
    fn rebuild(
        &self,
        snapshot: RebuildSnapshot,
        dir: &Path,
        expected: u64,
    ) -> Result<Written, Failure> {
        let dst = dir.join("data.mdb");
        let mut stop = None;
        let mut reported = 0u64;
        let rebuilt = snapshot.write_to(dir, &mut |bytes| {
            if let Err(failure) = self.pace(bytes) {
                stop = Some(failure);
                return false;
            }
            if self.abort.load(Ordering::SeqCst) {
                stop = Some(self.aborted());
                return false;
            }
            reported += bytes;
            let _ = self.events.send(Event::Bytes(bytes));
            true
        });
        if let Err(e) = rebuilt {
            return Err(stop.unwrap_or_else(|| e.into()));
        }
        if expected > reported {
            let _ = self.events.send(Event::Bytes(expected - reported));
        }
        // Hashed from the page cache while the disk writes it back, then fsynced.
        let written = hash_file(&dst, self.digest, &mut |_| {})
            .map_err(|e| write_failure(&dst, "reading back", e))?;
        let file = File::open(&dst).map_err(|e| write_failure(&dst, "syncing", e))?;
        file.sync_all()
            .map_err(|e| write_failure(&dst, "syncing", e))?;
        // The copy is on disk: its pages need not take the service's room in the page cache.
        let _ = nix::fcntl::posix_fadvise(
            &file,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
        Ok(written)
    }

    /// Write the compacted copy into `dst`: the walk fills and hashes chunks (each waits its
    /// turn under `--limit-rate`) while writer threads put them on disk; fsync it. The copy's
    /// exact size is allocated up front, so the copy cannot run out of room half-way for want
    /// of it, and so that the writers' O_DIRECT writes overwrite allocated blocks: a file
    /// system (ext4) runs those side by side, while writes that extend a file go one at a time.
    fn compact(&self, mut snapshot: CompactSnapshot, dst: &Path) -> Result<Written, Failure> {
        let expected = snapshot.bytes()?;
        let file = create_new(dst).map_err(|e| write_failure(dst, "copying", e))?;
        allocate(&file, expected).map_err(|e| write_failure(dst, "allocating", e))?;
        let direct = set_direct(&file, true);
        let file = Arc::new(file);
        let (full_tx, full_rx) = mpsc::sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
        let full_rx = Arc::new(Mutex::new(full_rx));
        let (empty_tx, empty_rx) = mpsc::channel::<Chunk>();
        let failed = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::with_capacity(DISK_WRITERS);
        for _ in 0..DISK_WRITERS {
            let (file, full_rx) = (file.clone(), full_rx.clone());
            let (empty_tx, failed) = (empty_tx.clone(), failed.clone());
            let spawned = thread::Builder::new()
                .name("backup-write".into())
                .spawn(move || write_chunks(&file, direct, &full_rx, &empty_tx, &failed));
            match spawned {
                Ok(writer) => writers.push(writer),
                // The writers already started end when `full_tx` is dropped.
                Err(e) => return Err(Failure::failed(format!("cannot start a writer: {e}"))),
            }
        }
        drop((empty_tx, full_rx));
        // Hashing runs beside the walk, on its own thread, in the copy's order.
        let (hash_tx, hash_rx) = mpsc::sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
        let digest = self.digest;
        let hasher = thread::Builder::new()
            .name("backup-hash".into())
            .spawn(move || {
                let mut hash = Hasher::new(digest);
                for mut chunk in hash_rx {
                    hash.update(chunk.filled());
                    if full_tx.send(chunk).is_err() {
                        break;
                    }
                }
                hash.finish()
            })
            .map_err(|e| Failure::failed(format!("cannot start a hasher: {e}")))?;
        let mut sink = ChunkSink {
            worker: self,
            size: 0,
            hashing: hash_tx,
            empty: empty_rx,
            made: 0,
            stop: None,
        };
        let walked = snapshot.write_to(&mut sink);
        let ChunkSink {
            size,
            hashing,
            stop,
            ..
        } = sink;
        drop(hashing);
        let digest = hasher
            .join()
            .map_err(|_| Failure::failed(format!("{}: the hasher panicked", dst.display())));
        let mut written = Ok(());
        for writer in writers {
            let result = writer
                .join()
                .map_err(|_| Failure::failed(format!("{}: a writer panicked", dst.display())))?
                .map_err(|e| write_failure(dst, "copying", e));
            written = written.and(result);
        }
        // The writers' error is the cause when both failed.
        written?;
        if let Err(e) = walked {
            return Err(stop.unwrap_or_else(|| e.into()));
        }
        file.sync_all()
            .map_err(|e| write_failure(dst, "syncing", e))?;
        Ok(Written {
            size,
            digest: digest?,
        })
    }

    /// Copy a file as it is (or as much of it as `limit` says).
    fn copy_file(&self, rel: &str, limit: Option<u64>) -> Result<Result<Written, Done>, Failure> {
        let src = self.src.join(rel);
        let dst = self.partial.join(rel);
        let mut input = match File::open(&src) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Err(Done::Vanished(rel.to_owned())));
            }
            Err(e) => return Ok(Err(unreadable(rel, &e))),
        };
        let mut out = HashingWriter::new(
            create_new(&dst).map_err(|e| write_failure(&dst, "copying", e))?,
            self.digest,
        );
        // Aligned, so that the copy can be written with O_DIRECT.
        let mut aligned = Aligned::new();
        let buf = aligned.get();
        let mut left = limit.unwrap_or(u64::MAX);
        while left > 0 {
            if self.abort.load(Ordering::SeqCst) {
                return Err(self.aborted());
            }
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match input.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    drop(out);
                    let _ = fs::remove_file(&dst);
                    return Ok(Err(unreadable(rel, &e)));
                }
            };
            self.pace(n as u64)?;
            out.write(&buf[..n])
                .map_err(|e| write_failure(&dst, "copying", e))?;
            left -= n as u64;
            let _ = self.events.send(Event::Bytes(n as u64));
        }
        if let Ok(meta) = input.metadata() {
            let _ = fs::set_permissions(&dst, meta.permissions());
        }
        let written = out
            .finish()
            .map_err(|e| write_failure(&dst, "syncing", e))?;
        Ok(Ok(written))
    }

    fn file(&self, rel: String) -> Result<Done, Failure> {
        Ok(match self.copy_file(&rel, None)? {
            Ok(written) => Done::File(entry(rel, written)),
            Err(other) => other,
        })
    }

    /// Copy an append-only log up to its durable length at the snapshot point.
    fn log(&self, rel: String, length: u64) -> Result<Done, Failure> {
        match self.copy_file(&rel, Some(length))? {
            Ok(written) if written.size == length => {
                let log = LogEntry {
                    path: rel.clone(),
                    length,
                };
                Ok(Done::Log(log, entry(rel, written)))
            }
            Ok(written) => Err(Failure::failed(format!(
                "{rel}: the log holds {} bytes, less than the {length} durable at the snapshot",
                written.size
            ))),
            Err(Done::Unreadable(u)) => Err(Failure::failed(format!(
                "{}: an append-only log cannot be read: {}",
                u.path, u.error
            ))),
            Err(_) => Err(Failure::failed(format!(
                "{rel}: the append-only log vanished during the backup"
            ))),
        }
    }
}

/// Where a worker's compacted copy goes: chunks handed in order to the hasher, which hands
/// them to the writers.
struct ChunkSink<'a> {
    worker: &'a Worker,
    /// Bytes handed on so far.
    size: u64,
    hashing: mpsc::SyncSender<Chunk>,
    empty: mpsc::Receiver<Chunk>,
    /// Buffers made so far.
    made: usize,
    /// Why the copy was stopped, if it was.
    stop: Option<Failure>,
}

impl CopySink for ChunkSink<'_> {
    type Buffer = Chunk;

    /// A buffer back from the writers, or a new one while every one made so far is still with
    /// them: fresh memory costs its first touch (the kernel zeroes it), so a copy makes only
    /// as many as its disk keeps busy.
    fn empty(&mut self) -> Option<Chunk> {
        if self.worker.abort.load(Ordering::SeqCst) {
            self.stop = Some(self.worker.aborted());
            return None;
        }
        let chunk = match self.empty.try_recv() {
            Ok(chunk) => chunk,
            Err(_) if self.made < CHUNKS_IN_FLIGHT => {
                self.made += 1;
                Chunk::new()
            }
            Err(_) => match self.empty.recv() {
                Ok(chunk) => chunk,
                Err(_) => {
                    self.stop = Some(Failure::failed("the writer stopped"));
                    return None;
                }
            },
        };
        Some(chunk)
    }

    fn filled(&mut self, mut chunk: Chunk, len: usize) -> bool {
        if let Err(failure) = self.worker.pace(len as u64) {
            self.stop = Some(failure);
            return false;
        }
        chunk.len = len;
        chunk.offset = self.size;
        self.size += len as u64;
        let _ = self.worker.events.send(Event::Bytes(len as u64));
        if self.hashing.send(chunk).is_err() {
            self.stop = Some(Failure::failed("the writer stopped"));
            return false;
        }
        true
    }
}

fn entry(path: String, written: Written) -> FileEntry {
    FileEntry::new(path, written.size, written.digest)
}

fn unreadable(rel: &str, err: &io::Error) -> Done {
    Done::Unreadable(Unreadable {
        path: rel.to_owned(),
        error: err.to_string(),
    })
}

fn report_summary(
    reporter: &mut Reporter,
    outcome: &Outcome,
    limit_rate: Option<u64>,
    took: Duration,
) {
    let m = &outcome.manifest;
    let iden = m.service.iden.as_deref().unwrap_or("-");
    let held = match m.held_ms {
        Some(ms) => format!("live, writes held {ms}ms"),
        None => "offline".into(),
    };
    let mut line = format!(
        "backed up {} ({} {}, {held}) to {}: {}, {}, {} in {:.1}s; the source grew {} \
         meanwhile",
        m.source,
        m.service.kind,
        iden,
        outcome.dst.display(),
        super::count(m.envs.len(), "environment"),
        super::count(m.files.len(), "file"),
        human_bytes(m.total_bytes()),
        took.as_secs_f64(),
        human_bytes(m.source_growth),
    );
    if let Some(rate) = limit_rate {
        line.push_str(&format!("; copied at most {}/s", human_bytes(rate)));
    }
    if outcome.verified {
        line.push_str("; verified");
    }
    if !m.unreadable.is_empty() {
        line.push_str(&format!(
            "; INCOMPLETE: {} could not be read (listed in the manifest)",
            super::count(m.unreadable.len(), "source file")
        ));
    }
    reporter.summary(
        &line,
        json!({
            "destination": outcome.dst,
            "source": m.source,
            "mode": m.mode,
            "service": m.service,
            "taken": m.taken,
            "held_ms": m.held_ms,
            "envs": m.envs.len(),
            "files": m.files.len(),
            "bytes": m.total_bytes(),
            "duration_ms": took.as_millis() as u64,
            "limit_rate": limit_rate,
            "source_bytes": m.source_bytes,
            "source_growth": m.source_growth,
            "unreadable": m.unreadable,
            "verified": outcome.verified,
            "exit": outcome.exit.code(),
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::fsutil::hash_file;
    use crate::storage::SlabOptions;

    /// An environment at `path` with `records` records (keys 0.. big-endian) in one database.
    fn slab_of(path: &Path, records: u32, value: impl Fn(u32) -> Vec<u8>) -> Slab {
        let slab = Slab::open(path, SlabOptions::default()).unwrap();
        let db = slab.db("items", false).unwrap();
        slab.write(|w| {
            for i in 0..records {
                db.put(w, &i.to_be_bytes(), &value(i))?;
            }
            Ok(())
        })
        .unwrap();
        slab
    }

    /// A compacted copy whose worker is told to stop ends with an error.
    #[test]
    fn a_stopped_copy_ends() {
        let tmp = tempfile::tempdir().unwrap();
        let slab = slab_of(&tmp.path().join("big.lmdb"), 20_000, |_| vec![1u8; 512]);
        let (worker, _events) = worker(tmp.path(), tmp.path());
        worker.abort.store(true, Ordering::SeqCst);
        let snapshot = slab.compact_snapshot().unwrap();
        let failure = worker
            .compact(snapshot, &tmp.path().join("copy"))
            .unwrap_err();
        assert_eq!(failure.message, "stopped");
    }

    /// A worker that copies from `src` into `partial`, and the receiver of its events.
    fn worker(src: &Path, partial: &Path) -> (Worker, mpsc::Receiver<Event>) {
        let (events, rx) = mpsc::channel();
        let worker = Worker {
            src: src.to_path_buf(),
            partial: partial.to_path_buf(),
            queue: Arc::new(Mutex::new(VecDeque::new())),
            abort: Arc::new(AtomicBool::new(false)),
            events,
            limit: None,
            digest: HashKind::Blake3,
            rebuild: false,
        };
        (worker, rx)
    }

    /// A compacted copy written by a worker is as large as LMDB's, holds every record, and
    /// its size and digest are the file's; progress counts every byte.
    #[test]
    fn a_worker_writes_the_compacted_copy() {
        let tmp = tempfile::tempdir().unwrap();
        let slab = slab_of(&tmp.path().join("env.lmdb"), 30_000, |i| {
            vec![(i % 251) as u8; 300]
        });
        let reference = tmp.path().join("reference");
        let size = slab.copy_compacted_to(&reference).unwrap();
        assert!(
            size > 3 * crate::backup::fsutil::CHUNK as u64,
            "several chunks: {size}"
        );
        let (worker, events) = worker(tmp.path(), tmp.path());
        let dir = tmp.path().join("copy");
        fs::create_dir(&dir).unwrap();
        let dst = dir.join("data.mdb");
        let written = worker
            .compact(slab.compact_snapshot().unwrap(), &dst)
            .unwrap();
        let on_disk = hash_file(&dst, HashKind::Blake3, &mut |_| {}).unwrap();
        assert_eq!((written.size, &written.digest), (size, &on_disk.digest));
        drop(worker);
        let told: u64 = events
            .iter()
            .map(|e| match e {
                Event::Bytes(n) => n,
                _ => 0,
            })
            .sum();
        assert_eq!(told, size);
        let copy = Slab::open_snapshot(&dir).unwrap();
        assert_eq!(copy.stats().unwrap().dbs, slab.stats().unwrap().dbs);
        let items = copy.db("items", false).unwrap();
        copy.read(|r| {
            assert_eq!(
                items.get(r, &29_999u32.to_be_bytes())?,
                Some(&[130u8; 300][..])
            );
            Ok(())
        })
        .unwrap();
    }
}
