//! `syn backup SRCDIR DSTDIR`: the copy itself.
//!
//! Every environment is copied by LMDB's compacting copy straight into the backup's
//! `data.mdb`, with O_DIRECT where the file system allows it (as `mdb_copy -c` does: the copy
//! goes to the disk without a detour and does not push the service's pages out of the page
//! cache). A worker follows the copy, reading back (with O_DIRECT too) and hashing what has
//! reached the file, so the manifest's digest is of the bytes on disk and hashing costs the
//! copy nothing but the hash itself. A copy's read transaction begins before its first byte
//! is written, so for a live backup the hold is released as soon as every copy's file has
//! data: from then on the copies read their snapshots while the service writes on.

use super::fsutil::{
    DirLock, DirUse, Hasher, HashingWriter, Written, claim_service_dir, create_new, free_space,
    is_no_space, parent_of, remove_as_partial, sync_dir, with_suffix, write_failure,
};
use super::live::LiveHold;
use super::manifest::{
    EnvEntry, FileEntry, HashKind, LogEntry, Manifest, Service, Unreadable, now_ms, utc_string,
};
use super::plan::{Plan, is_skipped, layout_kind};
use super::report::{Progress, Reporter};
use super::{Exit, Failure, PARTIAL_SUFFIX, human_bytes};
use crate::cell::SYN_VERSION;
use crate::cell::dir::GUID_FILE;
use crate::storage::{Slab, StorageError};
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often blocked workers and the main loop look for an interruption or a deadline.
const TICK: Duration = Duration::from_millis(100);
/// The chunk a worker reads back and hashes.
const CHUNK: usize = 1 << 20;
/// The most threads that fsync the backup's directories at once.
const SYNC_THREADS: usize = 16;
/// How long the hashing of a copy waits for more of it to reach the file.
const FOLLOW_POLL: Duration = Duration::from_millis(1);
/// The alignment of O_DIRECT buffers and writes.
const DIRECT_ALIGN: usize = 4096;
/// How often the hold checks whether every copy has begun.
const BEGIN_POLL: Duration = Duration::from_millis(1);
/// Room asked for beyond the estimate: estimates of duplicate-heavy databases run low.
const SPACE_MARGIN_DIVISOR: u64 = 20;

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

    if live {
        yield_to_service();
    }
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
            report_summary(reporter, &outcome, started.elapsed());
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

/// The result of a copy thread: how the copy ended, and the descriptor it wrote through (kept
/// open until the thread is joined, so [`Started::stop`] never touches a reused number).
type CopyResult = (Result<(), StorageError>, File);

/// A compacted copy running into the backup's `data.mdb`.
struct Started {
    /// The file being written (for its size and to be synced).
    file: File,
    /// Whether the copy writes with O_DIRECT (then it is read back with O_DIRECT too).
    direct: bool,
    /// The copy thread's own descriptor of the file.
    copy_fd: std::os::fd::RawFd,
    thread: JoinHandle<CopyResult>,
}

impl Started {
    /// Whether the copy has written anything yet.
    fn has_begun(&self) -> bool {
        self.file.metadata().is_ok_and(|m| m.len() > 0)
    }

    /// Make the copy's next write fail, so it ends, and wait for it; whether the copy ended
    /// with an error (false if it was already complete).
    fn stop(self) -> bool {
        self.cut();
        !matches!(self.thread.join(), Ok((Ok(()), _)))
    }

    /// Point the copy's descriptor at a pipe nobody reads: its next write fails (EPIPE).
    fn cut(&self) {
        if let Ok((read_end, write_end)) = nix::unistd::pipe() {
            drop(read_end);
            // SAFETY: `copy_fd` is open: the copy thread owns it until the thread is joined,
            // which takes `self`. dup2 replaces it atomically.
            unsafe { nix::libc::dup2(write_end.as_raw_fd(), self.copy_fd) };
        }
    }
}

/// Start the compacted copy of `slab` into the new file `dst`, written with O_DIRECT where the
/// file system allows it (as `mdb_copy` does: the copy goes straight to the disk and does not
/// push the service's pages out of the page cache).
fn start_copy(slab: &Slab, dst: &Path) -> Result<Started, Failure> {
    let file = create_new(dst).map_err(|e| write_failure(dst, "copying", e))?;
    let direct = set_direct(&file, true);
    let out = file
        .try_clone()
        .map_err(|e| write_failure(dst, "copying", e))?;
    let copy_fd = out.as_raw_fd();
    let slab = slab.clone();
    let thread = thread::Builder::new()
        .name("backup-copy".into())
        .spawn(move || (slab.copy_compacted_to_fd(out.as_fd()), out))
        .map_err(|e| Failure::failed(format!("cannot start a copy thread: {e}")))?;
    Ok(Started {
        file,
        direct,
        copy_fd,
        thread,
    })
}

/// Let the running service come first: lower this thread's CPU priority (nice 10) and I/O
/// priority (best effort, lowest level); the threads it starts inherit both. Best effort:
/// where the kernel refuses, the backup runs as it is.
fn yield_to_service() {
    const NICE: nix::libc::c_int = 10;
    const IOPRIO_WHO_PROCESS: nix::libc::c_long = 1;
    const IOPRIO_CLASS_BE: nix::libc::c_long = 2;
    const IOPRIO_LOWEST: nix::libc::c_long = 7;
    // SAFETY: plain system calls about the calling thread.
    unsafe {
        nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, NICE);
        nix::libc::syscall(
            nix::libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0,
            (IOPRIO_CLASS_BE << 13) | IOPRIO_LOWEST,
        );
    }
}

/// Turn O_DIRECT on or off for `file`; false where the file system does not support it.
fn set_direct(file: &File, on: bool) -> bool {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let Ok(flags) = fcntl(file, FcntlArg::F_GETFL) else {
        return false;
    };
    let mut flags = OFlag::from_bits_truncate(flags);
    flags.set(OFlag::O_DIRECT, on);
    fcntl(file, FcntlArg::F_SETFL(flags)).is_ok()
}

/// A buffer aligned for O_DIRECT reads.
struct Aligned {
    storage: Vec<u8>,
    start: usize,
}

impl Aligned {
    fn new() -> Aligned {
        let storage = vec![0u8; CHUNK + DIRECT_ALIGN];
        let start = storage.as_ptr().align_offset(DIRECT_ALIGN);
        Aligned { storage, start }
    }

    fn get(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + CHUNK]
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
    Env(String, Arc<Mutex<Option<Started>>>, Slab),
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
        let mut started: BTreeMap<String, Started> = BTreeMap::new();
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
            for (rel, slab) in &self.envs {
                let dst = self.partial.join(rel).join("data.mdb");
                started.insert(rel.clone(), start_copy(slab, &dst)?);
            }
            let begun = self
                .wait_until_begun(&mut started, opts.hold_timeout)
                .and_then(|()| hold.release());
            let held = match begun {
                Ok(held) => held,
                Err(failure) => {
                    for (_, copy) in std::mem::take(&mut started) {
                        let _ = copy.stop();
                    }
                    return Err(failure);
                }
            };
            held_ms = Some(held.as_millis() as u64);
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
        let done = self.run_jobs(queue, opts.parallel.max(1), reporter)?;

        let mut manifest = Manifest {
            format: super::manifest::FORMAT,
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

    /// Wait until every copy has written its first bytes (so its read transaction has begun),
    /// within the hold's timeout.
    fn wait_until_begun(
        &self,
        started: &mut BTreeMap<String, Started>,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let deadline = Instant::now() + timeout;
        let mut waiting: Vec<String> = started.keys().cloned().collect();
        loop {
            waiting.retain(|rel| !started[rel].has_begun());
            let Some(first) = waiting.first() else {
                return Ok(());
            };
            if let Some(stop) = self.stop_reason() {
                return Err(stop);
            }
            // A copy that ended without writing anything failed, and says why.
            if let Some(rel) = waiting.iter().find(|r| started[*r].thread.is_finished()) {
                let copy = started.remove(rel).expect("started copy");
                let dst = self.partial.join(rel).join("data.mdb");
                return Err(match copy.thread.join() {
                    Ok((Err(e), _)) => copy_failure(e, &dst),
                    Ok((Ok(()), _)) => Failure::failed(format!("{rel}: the copy wrote nothing")),
                    Err(_) => Failure::failed(format!("{rel}: the copy thread panicked")),
                });
            }
            if Instant::now() >= deadline {
                return Err(Failure::failed(format!(
                    "the snapshot of {first} did not begin within the hold ({}ms); try a larger \
                     --hold-timeout",
                    timeout.as_millis()
                )));
            }
            thread::sleep(BEGIN_POLL);
        }
    }

    /// Run the jobs on `parallel` workers, reporting progress, until all are done or one
    /// fails (or the run is interrupted or too long).
    fn run_jobs(
        &self,
        queue: VecDeque<Job>,
        parallel: usize,
        reporter: &mut Reporter,
    ) -> Result<Vec<Done>, Failure> {
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
        for _ in 0..parallel {
            let worker = Worker {
                src: self.src.clone(),
                partial: self.partial.clone(),
                queue: queue.clone(),
                abort: abort.clone(),
                events: tx.clone(),
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
        // Copies no worker got to (a live run stopped early) are stopped.
        let left: Vec<Job> = queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        for job in left {
            if let Job::Env(_, copy, _) = job
                && let Some(started) = copy.lock().unwrap_or_else(PoisonError::into_inner).take()
            {
                let _ = started.stop();
            }
        }
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

/// One of the threads that copy files and drain environment copies.
struct Worker {
    src: PathBuf,
    partial: PathBuf,
    queue: Arc<Mutex<VecDeque<Job>>>,
    abort: Arc<AtomicBool>,
    events: mpsc::Sender<Event>,
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

    /// Copy an environment into `data.mdb` of the backup (or finish the copy started at the
    /// snapshot point), hashing what reached the file as it goes.
    fn env(
        &self,
        rel: String,
        copy: Arc<Mutex<Option<Started>>>,
        slab: &Slab,
    ) -> Result<Done, Failure> {
        let dst = self.partial.join(&rel).join("data.mdb");
        let already = copy.lock().unwrap_or_else(PoisonError::into_inner).take();
        let started = match already {
            Some(started) => started,
            None => start_copy(slab, &dst)?,
        };
        let hashed = self.hash_behind(&started, &dst);
        let written = match hashed {
            Ok(written) => written,
            Err(failure) => {
                started.stop();
                return Err(failure);
            }
        };
        let Started { file, thread, .. } = started;
        match thread.join() {
            Ok((Ok(()), _)) => {}
            Ok((Err(e), _)) => return Err(copy_failure(e, &dst)),
            Err(_) => return Err(Failure::failed(format!("{rel}: the copy panicked"))),
        }
        file.sync_all()
            .map_err(|e| write_failure(&dst, "syncing", e))?;
        if let Ok(meta) = fs::metadata(self.src.join(&rel).join("data.mdb")) {
            let _ = fs::set_permissions(&dst, meta.permissions());
        }
        // The copy's own counts: the snapshot it holds, whatever the source did since.
        let copy = Slab::open_snapshot(self.partial.join(&rel))?;
        let dbs = copy.stats()?.dbs;
        drop(copy);
        let path = format!("{rel}/data.mdb");
        Ok(Done::Env(EnvEntry { path: rel, dbs }, entry(path, written)))
    }

    /// Read back and hash what the copy writes to `dst`, following it until it ends: the
    /// digest is of the bytes in the file (read with O_DIRECT, from the disk, when the copy
    /// writes that way). Needs no extra copy of the data on the copy's way to the disk.
    fn hash_behind(&self, copy: &Started, dst: &Path) -> Result<Written, Failure> {
        let read_err =
            |e: io::Error| Failure::failed(format!("{}: reading back: {e}", dst.display()));
        let reader = File::open(dst).map_err(read_err)?;
        if copy.direct && !set_direct(&reader, true) {
            return Err(Failure::failed(format!(
                "{}: cannot read back with O_DIRECT",
                dst.display()
            )));
        }
        let mut hash = Hasher::new(HashKind::Blake3);
        let mut buf = Aligned::new();
        let mut pos = 0u64;
        loop {
            if self.abort.load(Ordering::SeqCst) {
                return Err(self.aborted());
            }
            // Whether the copy is over is asked before the size: then the size is final.
            let finished = copy.thread.is_finished();
            let size = copy.file.metadata().map_err(read_err)?.len();
            let mut progressed = false;
            while pos < size {
                let want = usize::try_from(size - pos).unwrap_or(CHUNK).min(CHUNK);
                // O_DIRECT reads whole blocks; a partial block at the end is read once the
                // copy is over (a short read at the end of the file is fine then).
                let want = if finished {
                    want.next_multiple_of(DIRECT_ALIGN).min(CHUNK)
                } else {
                    want - want % DIRECT_ALIGN
                };
                if want == 0 {
                    break;
                }
                let n = std::os::unix::fs::FileExt::read_at(&reader, &mut buf.get()[..want], pos)
                    .map_err(read_err)?;
                if n == 0 {
                    break;
                }
                hash.update(&buf.get()[..n]);
                pos += n as u64;
                progressed = true;
                let _ = self.events.send(Event::Bytes(n as u64));
            }
            if finished {
                if pos != size {
                    return Err(Failure::failed(format!(
                        "{}: read back {pos} bytes of {size}",
                        dst.display()
                    )));
                }
                return Ok(Written {
                    size,
                    digest: hash.finish(),
                });
            }
            if !progressed {
                thread::sleep(FOLLOW_POLL);
            }
        }
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
            HashKind::Blake3,
        );
        let mut buf = vec![0u8; CHUNK];
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

/// A failed copy into `dst` as a failure: a full destination gets its own exit code.
fn copy_failure(err: StorageError, dst: &Path) -> Failure {
    match err {
        StorageError::Lmdb {
            source: heed::Error::Io(io),
            ..
        } if is_no_space(&io) => write_failure(dst, "copying", io),
        other => Failure::failed(other.to_string()),
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

fn report_summary(reporter: &mut Reporter, outcome: &Outcome, took: Duration) {
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
    use crate::storage::SlabOptions;

    /// A copy that is stopped ends with an error instead of running on or hanging.
    #[test]
    fn a_stopped_copy_ends() {
        let tmp = tempfile::tempdir().unwrap();
        let slab = Slab::open(tmp.path().join("big.lmdb"), SlabOptions::default()).unwrap();
        let db = slab.db("items", false).unwrap();
        slab.write(|w| {
            for i in 0..20_000u32 {
                db.put(w, &i.to_be_bytes(), &[1u8; 512])?;
            }
            Ok(())
        })
        .unwrap();
        // A fifo as the "file": the copy blocks on it after its first bytes until it is cut,
        // then the fifo is drained (so the write in progress returns) and the next write fails.
        let fifo = tmp.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let (began_tx, began) = mpsc::channel();
        let (cut_tx, cut) = mpsc::channel::<()>();
        let reader = thread::spawn({
            let fifo = fifo.clone();
            move || {
                let mut f = File::open(&fifo).unwrap();
                let mut first = [0u8; 16];
                f.read_exact(&mut first).unwrap();
                began_tx.send(()).unwrap();
                cut.recv().unwrap();
                let _ = io::copy(&mut f, &mut io::sink());
            }
        });
        let file = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let out = file.try_clone().unwrap();
        let copy_fd = out.as_raw_fd();
        let copying = thread::spawn(move || (slab.copy_compacted_to_fd(out.as_fd()), out));
        let started = Started {
            file,
            direct: false,
            copy_fd,
            thread: copying,
        };
        began.recv().unwrap();
        started.cut();
        cut_tx.send(()).unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || tx.send(started.stop()).unwrap());
        // The 10 MB copy ended early, with an error.
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(true));
        reader.join().unwrap();
    }
}
