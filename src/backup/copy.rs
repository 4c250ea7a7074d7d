//! `syn backup SRCDIR DSTDIR`: the copy itself.
//!
//! Every environment is copied by LMDB's compacting copy straight into its file in the backup,
//! while a worker follows the file as it grows, hashing what was written and starting its
//! write-back. A copy's read transaction begins before its first byte is written, so for a live
//! backup the hold is released as soon as every copy's file has data: from then on the copies
//! read their snapshots while the service writes on.

use super::fsutil::{
    DirLock, DirUse, HashingWriter, Written, claim_service_dir, create_new, free_space, parent_of,
    remove_as_partial, sync_dir, with_suffix, write_failure,
};
use super::live::LiveHold;
use super::manifest::{
    EnvEntry, FileEntry, LogEntry, Manifest, Service, Unreadable, now_ms, utc_string,
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
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often blocked workers and the main loop look for an interruption or a deadline.
const TICK: Duration = Duration::from_millis(100);
/// The read buffer of a worker.
const CHUNK: usize = 1 << 20;
/// How long a worker waits for a copy to write more, or for copies to begin.
const FOLLOW_WAIT: Duration = Duration::from_millis(1);
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
            manifest.write(&partial)?;
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

/// A compacted copy running straight into its file in the backup.
struct Started {
    file: Arc<File>,
    thread: JoinHandle<Result<(), StorageError>>,
}

impl Started {
    /// Bytes the copy has written so far.
    fn written(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.len())
    }

    /// Make the copy's next write fail, so it ends at once, and wait for it; whether the
    /// copy ended with an error (false if it was already complete).
    fn stop(self) -> bool {
        if let Ok(full) = File::options().write(true).open("/dev/full") {
            // The descriptor's number now means /dev/full: the copy's writes fail with ENOSPC.
            // SAFETY: both descriptors are open; dup2 replaces the second atomically.
            unsafe {
                nix::libc::dup2(
                    std::os::fd::AsRawFd::as_raw_fd(&full),
                    std::os::fd::AsRawFd::as_raw_fd(&*self.file),
                );
            }
        }
        !matches!(self.thread.join(), Ok(Ok(())))
    }
}

/// Start the compacted copy of `slab` into `dst` (a new file).
fn start_copy(slab: &Slab, dst: &Path) -> Result<Started, Failure> {
    let file = Arc::new(create_new(dst).map_err(|e| write_failure(dst, "copying", e))?);
    let slab = slab.clone();
    let target = file.clone();
    let thread = thread::Builder::new()
        .name("backup-copy".into())
        .spawn(move || slab.copy_compacted_to_fd(target.as_fd()))
        .map_err(|e| Failure::failed(format!("cannot start a copy thread: {e}")))?;
    Ok(Started { file, thread })
}

/// What one worker finished.
enum Done {
    File(FileEntry),
    Env(String, FileEntry),
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
            self.wait_until_begun(&mut started, opts.hold_timeout)?;
            let held = hold.release()?;
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
                Done::Env(rel, f) => {
                    manifest.files.push(f);
                    let copy = Slab::open_snapshot(self.partial.join(&rel))?;
                    let dbs = copy.stats()?.dbs;
                    drop(copy);
                    manifest.envs.push(EnvEntry { path: rel, dbs });
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
        self.sync_dirs(&manifest)?;
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
            waiting.retain(|rel| started[rel].written() == 0);
            let Some(first) = waiting.first() else {
                return Ok(());
            };
            if let Some(stop) = self.stop_reason() {
                return Err(stop);
            }
            // A copy that ended without writing anything failed, and says why.
            if let Some(rel) = waiting.iter().find(|r| started[*r].thread.is_finished()) {
                let copy = started.remove(rel).expect("started copy");
                let err = match copy.thread.join() {
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(())) => format!("{rel}: the copy wrote nothing"),
                    Err(_) => format!("{rel}: the copy thread panicked"),
                };
                return Err(Failure::failed(err));
            }
            if Instant::now() >= deadline {
                return Err(Failure::failed(format!(
                    "the snapshot of {first} did not begin within the hold ({}ms); try a larger \
                     --hold-timeout",
                    timeout.as_millis()
                )));
            }
            thread::sleep(FOLLOW_WAIT);
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

    /// fsync every directory of the backup, deepest first, so every name in it is durable.
    fn sync_dirs(&self, manifest: &Manifest) -> Result<(), Failure> {
        let mut dirs: Vec<PathBuf> = manifest
            .dirs
            .iter()
            .chain(manifest.envs.iter().map(|e| &e.path))
            .map(|d| self.partial.join(d))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs.push(self.partial.clone());
        for dir in dirs.iter().rev() {
            sync_dir(dir).map_err(|e| write_failure(dir, "syncing directories", e))?;
        }
        Ok(())
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

    /// Copy an environment into `data.mdb` of the backup (or follow the copy started at the
    /// snapshot point), hashing it as it is written.
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
        let written = self.follow(started, &dst)?;
        if let Ok(meta) = fs::metadata(self.src.join(&rel).join("data.mdb")) {
            let _ = fs::set_permissions(&dst, meta.permissions());
        }
        let path = format!("{rel}/data.mdb");
        Ok(Done::Env(rel, entry(path, written)))
    }

    /// Hash what the copy writes as it writes it, until it ends; then fsync the file.
    fn follow(&self, started: Started, dst: &Path) -> Result<Written, Failure> {
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; CHUNK];
        let mut hashed = 0u64;
        loop {
            if self.abort.load(Ordering::SeqCst) {
                let _ = started.stop();
                return Err(self.aborted());
            }
            let finished = started.thread.is_finished();
            let size = started.written();
            if hashed < size {
                let want = buf
                    .len()
                    .min(usize::try_from(size - hashed).unwrap_or(CHUNK));
                let n =
                    std::os::unix::fs::FileExt::read_at(&*started.file, &mut buf[..want], hashed)
                        .map_err(|e| Failure::failed(format!("{}: {e}", dst.display())))?;
                hash.update(&buf[..n]);
                // Start writing back what is hashed; the fsync below makes it durable.
                // SAFETY: a plain system call on an open descriptor.
                unsafe {
                    nix::libc::sync_file_range(
                        std::os::fd::AsRawFd::as_raw_fd(&*started.file),
                        hashed as i64,
                        n as i64,
                        nix::libc::SYNC_FILE_RANGE_WRITE,
                    );
                }
                hashed += n as u64;
                let _ = self.events.send(Event::Bytes(n as u64));
                continue;
            }
            if finished {
                break;
            }
            thread::sleep(FOLLOW_WAIT);
        }
        let Started { file, thread } = started;
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(copy_failure(dst, e)),
            Err(_) => {
                return Err(Failure::failed(format!(
                    "{}: the copy panicked",
                    dst.display()
                )));
            }
        }
        file.sync_all()
            .map_err(|e| write_failure(dst, "syncing", e))?;
        Ok(Written {
            size: hashed,
            sha256: hex::encode(hash.finish().as_ref()),
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
        let mut out =
            HashingWriter::new(create_new(&dst).map_err(|e| write_failure(&dst, "copying", e))?);
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

/// A failed copy; a full destination gets its own exit code.
fn copy_failure(dst: &Path, err: StorageError) -> Failure {
    match &err {
        StorageError::Lmdb {
            source: heed::Error::Io(io),
            ..
        } if super::fsutil::is_no_space(io) => write_failure(
            dst,
            "copying",
            std::io::Error::from_raw_os_error(nix::libc::ENOSPC),
        ),
        StorageError::Lmdb {
            source: heed::Error::Mdb(heed::MdbError::Other(code)),
            ..
        } if *code == nix::libc::ENOSPC || *code == nix::libc::EDQUOT => {
            write_failure(dst, "copying", std::io::Error::from_raw_os_error(*code))
        }
        _ => Failure::failed(err.to_string()),
    }
}

fn entry(path: String, written: Written) -> FileEntry {
    FileEntry {
        path,
        size: written.size,
        sha256: written.sha256,
    }
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
        "backed up {} ({} {}, {held}) to {}: {} environments, {} files, {} in {:.1}s; the \
         source grew {} meanwhile",
        m.source,
        m.service.kind,
        iden,
        outcome.dst.display(),
        m.envs.len(),
        m.files.len(),
        human_bytes(m.total_bytes()),
        took.as_secs_f64(),
        human_bytes(m.source_growth),
    );
    if outcome.verified {
        line.push_str("; verified");
    }
    if !m.unreadable.is_empty() {
        line.push_str(&format!(
            "; INCOMPLETE: {} source files could not be read (listed in the manifest)",
            m.unreadable.len()
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

    /// A copy that is stopped ends at once with an error instead of running on.
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
        let started = start_copy(&slab, &tmp.path().join("copy.mdb")).unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || tx.send(started.stop()).unwrap());
        let cut_short = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the copy ended");
        if !cut_short {
            // It was complete before the stop: then it is the whole copy.
            let whole = slab.stats().unwrap();
            let size = fs::metadata(tmp.path().join("copy.mdb")).unwrap().len();
            assert_eq!(size, whole.used_pages * u64::from(whole.page_size));
        }
    }
}
