//! Output files that appear only when the run succeeds, all together or not at all.
//!
//! Rows go to a temp file in the target's directory (same filesystem, so the final rename is
//! atomic). Publishing is two-phase across every output of a run:
//! 1. [`AtomicOutput::prepare`] flushes (and with `Durable`, fsyncs) each temp file and checks
//!    each target again (a `NoClobber` target that appeared, a target that became a device);
//! 2. only when every output is prepared, [`AtomicOutput::commit`] moves each into place —
//!    keeping a hard-linked backup of a replaced file, or the length of a file appended to —
//!    and a failure part-way calls [`AtomicOutput::rollback`] on those already published,
//!    which restores what they replaced (or truncates an append back).
//!
//! Dropping an output deletes its temp file (and, after a commit, its backup). Temp files are
//! named `.<name>.<pid>.<random>.flowengine-tmp`: a process killed with SIGKILL leaves one
//! behind, and the next run that writes into the same directory removes every such file whose
//! process is gone — never one of a live run. [`remove_live_temp_files`] deletes this
//! process's temp files at once (for a second Ctrl-C).
//!
//! Targets are regular files. A symlink is followed and the file it points to is replaced
//! (the link stays); a device, FIFO, socket or directory is refused — write to standard
//! output with `FilePath: -` instead.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::pool::{BufferPool, Pooling};

/// How the final file is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Replace the target if it exists.
    Overwrite,
    /// Refuse when the target exists (checked at open and again at commit).
    NoClobber,
    /// Append the new rows to the target at commit.
    Append,
}

const TMP_SUFFIX: &str = ".flowengine-tmp";
const BAK_SUFFIX: &str = ".flowengine-bak";

/// Temp and backup files of this process that exist right now.
static LIVE: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn live_insert(p: &Path) {
    let mut g = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(HashSet::new).insert(p.to_path_buf());
}

fn live_remove(p: &Path) {
    let mut g = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(set) = g.as_mut() {
        set.remove(p);
    }
}

/// Deletes every temp file this process has open for an unpublished output (backups are
/// left: they may be the only copy of a replaced file). For a hard exit, e.g. a second
/// Ctrl-C, where destructors will not run.
pub fn remove_live_temp_files() {
    let g = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(set) = g.as_ref() {
        for p in set {
            if p.to_string_lossy().ends_with(TMP_SUFFIX) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Whether process `pid` is alive. Without `/proc` we cannot tell, and assume it is (a temp
/// file is then left rather than another run's file removed).
pub(crate) fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc_root = Path::new("/proc");
    if !proc_root.join("self").exists() {
        return true;
    }
    proc_root.join(pid.to_string()).exists()
}

/// Removes temp files of `name` in `dir` left by processes that no longer exist, and puts
/// back a backup whose target went missing (a crash in the middle of publishing).
fn remove_stale(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let prefix = format!(".{name}.");
    for e in entries.flatten() {
        let file_name = e.file_name();
        let Some(f) = file_name.to_str() else { continue };
        let Some(rest) = f.strip_prefix(&prefix) else { continue };
        let (is_tmp, is_bak) = (f.ends_with(TMP_SUFFIX), f.ends_with(BAK_SUFFIX));
        if !is_tmp && !is_bak {
            continue;
        }
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        let path = e.path();
        if is_bak && !dir.join(name).exists() {
            let _ = std::fs::rename(&path, dir.join(name));
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Resolves where an output really goes: a symlink to its final target; refuses anything
/// that is not a regular file.
fn resolve_target(target: &Path) -> Result<PathBuf> {
    let meta = match std::fs::symlink_metadata(target) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(target.to_path_buf()),
        Err(e) => return Err(Error::io(target, e, "cannot inspect the output path")),
    };
    let real = if meta.file_type().is_symlink() {
        match std::fs::canonicalize(target) {
            Ok(r) => r,
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                // A loop of links, or a link through something unreadable.
                return Err(Error::io(target, e, "cannot follow the symlink of the output path"));
            }
            // A dangling link: create the file it names.
            Err(_) => {
                let link = std::fs::read_link(target).map_err(|e| Error::io(target, e, "cannot read the symlink"))?;
                let base = target.parent().unwrap_or(Path::new("."));
                return Ok(base.join(link));
            }
        }
    } else {
        target.to_path_buf()
    };
    let meta = std::fs::metadata(&real).map_err(|e| Error::io(&real, e, "cannot inspect the output path"))?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a device, FIFO or socket)"
        };
        return Err(Error::io(
            target,
            io::Error::from(io::ErrorKind::InvalidInput),
            format!("the output path is {what}; outputs are written to a temp file and renamed into place, which would replace it — give a file path, or FilePath: - to write to standard output"),
        ));
    }
    Ok(real)
}

enum Dest {
    Temp(tempfile::NamedTempFile),
    Stdout(io::Stdout),
}

impl Write for Dest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Dest::Temp(t) => t.write(buf),
            Dest::Stdout(s) => s.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Dest::Temp(t) => t.write_all(buf),
            Dest::Stdout(s) => s.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Dest::Temp(t) => t.flush(),
            Dest::Stdout(s) => s.flush(),
        }
    }
}

/// What a commit did, so that [`AtomicOutput::rollback`] can undo it.
enum Published {
    /// The target did not exist: remove it.
    Created,
    /// The target was replaced; its old content is hard-linked at this path.
    Replaced(PathBuf),
    /// Rows were appended to a file of this length: truncate back.
    Appended(u64),
}

#[cfg(test)]
pub(crate) mod failpoint {
    //! Fault injection for tests: make the commit of one target fail part-way.
    use std::path::PathBuf;
    use std::sync::Mutex;
    /// Targets whose commit fails (after writing part of an append). Tests run in
    /// parallel, so each adds and removes its own.
    static FAIL_COMMIT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    pub(crate) fn hit(target: &std::path::Path) -> bool {
        FAIL_COMMIT.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|p| p == target)
    }
    pub(crate) fn arm(target: PathBuf) {
        FAIL_COMMIT.lock().unwrap_or_else(|e| e.into_inner()).push(target);
    }
    pub(crate) fn disarm(target: &std::path::Path) {
        FAIL_COMMIT.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| p != target);
    }
}

/// `run --limit`: where every output goes instead (see [`redirect_outputs`]).
static REDIRECT: std::sync::RwLock<Option<PathBuf>> = std::sync::RwLock::new(None);

/// From now on, every output file this process creates is written into `dir`, under its own
/// file name, instead of where its step says; `None` restores the configured paths. The
/// CLI's `run --limit` uses it so that a dry run never touches the real outputs. Two outputs
/// with one file name in different directories then collide: the second fails to publish.
pub fn redirect_outputs(dir: Option<PathBuf>) {
    *REDIRECT.write().unwrap_or_else(|e| e.into_inner()) = dir;
}

fn redirected(target: &Path) -> PathBuf {
    match REDIRECT.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(dir) => dir.join(target.file_name().unwrap_or(std::ffi::OsStr::new("output"))),
        None => target.to_path_buf(),
    }
}

/// A buffered writer over a temp file that becomes `target` on commit.
pub struct AtomicOutput {
    target: PathBuf,
    publish: Publish,
    /// fsync before publishing, so the file also survives a power loss.
    durable: bool,
    writer: Option<BufWriter<Dest>>,
    /// The finished temp file, between prepare and commit.
    prepared: Option<tempfile::NamedTempFile>,
    published: Option<Published>,
    /// Appending: bytes written first when the target is empty (a header).
    header: Vec<u8>,
}

impl AtomicOutput {
    /// Opens the temp file next to `target` (next to the file a symlink points to).
    ///
    /// # Errors
    /// The directory is missing (and `create_dirs` is false), not writable, the target is
    /// not a regular file, or it exists under [`Publish::NoClobber`].
    pub fn create(target: &Path, publish: Publish, create_dirs: bool, buffer: usize) -> Result<AtomicOutput> {
        let target = resolve_target(&redirected(target))?;
        let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.exists() {
            if create_dirs {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e, "cannot create the output directory"))?;
            } else {
                return Err(Error::io(
                    dir,
                    io::Error::from(io::ErrorKind::NotFound),
                    "the output directory does not exist; create it or set CreateDirectory: true",
                ));
            }
        }
        if publish == Publish::NoClobber && target.exists() {
            return Err(Error::io(
                &target,
                io::Error::from(io::ErrorKind::AlreadyExists),
                "the output file exists and OverwriteExisting is false; remove it, set OverwriteExisting: true, or AppendMode: true",
            ));
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        remove_stale(dir, &name);
        let mut builder = tempfile::Builder::new();
        // tempfile creates 0600 files; an output file gets the usual 0644 (less the umask).
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
        let tmp = builder
            .prefix(&format!(".{name}.{}.", std::process::id()))
            .suffix(TMP_SUFFIX)
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e, "cannot create a temp file in the output directory"))?;
        live_insert(tmp.path());
        Ok(AtomicOutput {
            target,
            publish,
            durable: false,
            writer: Some(BufWriter::with_capacity(buffer.max(4096), Dest::Temp(tmp))),
            prepared: None,
            published: None,
            header: Vec::new(),
        })
    }

    /// Writes straight to standard output (`FilePath: -`): nothing to publish or roll back,
    /// so a failed run may have written part of its rows — the price of a stream.
    pub fn stdout(buffer: usize) -> AtomicOutput {
        AtomicOutput {
            target: PathBuf::from("-"),
            publish: Publish::Append,
            durable: false,
            writer: Some(BufWriter::with_capacity(buffer.max(4096), Dest::Stdout(io::stdout()))),
            prepared: None,
            published: None,
            header: Vec::new(),
        }
    }

    /// Appending: write `header` first when the target is empty at the moment of appending
    /// (checked under the target's lock, so concurrent appends write it once).
    pub fn header_if_empty(mut self, header: Vec<u8>) -> Self {
        self.header = header;
        self
    }

    /// Also fsync the data before publishing (the rename is atomic either way; without
    /// fsync a power loss right after the run may leave the file empty on some filesystems).
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// The final path (`-` for standard output).
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes buffered bytes to the temp file.
    ///
    /// # Errors
    /// I/O.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(w) = &mut self.writer {
            w.flush().map_err(|e| Error::io(&self.target, e, "cannot write the output"))?;
        }
        Ok(())
    }

    /// Phase one of publishing: everything is written (and fsync'd when durable) and the
    /// target can still be published. Publishes nothing.
    ///
    /// # Errors
    /// I/O; the target became something other than a regular file; a target that appeared
    /// meanwhile under [`Publish::NoClobber`].
    pub fn prepare(&mut self) -> Result<()> {
        let Some(w) = self.writer.take() else { return Ok(()) };
        let dest = w
            .into_inner()
            .map_err(|e| Error::io(&self.target, e.into_error(), "cannot write the output"))?;
        let tmp = match dest {
            Dest::Temp(t) => t,
            Dest::Stdout(mut s) => {
                return s.flush().map_err(|e| Error::io("-", e, "cannot write to standard output"));
            }
        };
        if self.durable {
            tmp.as_file()
                .sync_all()
                .map_err(|e| Error::io(&self.target, e, "cannot sync the output"))?;
        }
        resolve_target(&self.target)?;
        if self.publish == Publish::NoClobber && self.target.exists() {
            return Err(Error::io(
                &self.target,
                io::Error::from(io::ErrorKind::AlreadyExists),
                "the output file appeared during the run and OverwriteExisting is false",
            ));
        }
        self.prepared = Some(tmp);
        Ok(())
    }

    /// Phase two: moves the prepared file into place (prepares first if needed). After a
    /// successful commit, [`AtomicOutput::rollback`] can still undo it.
    ///
    /// # Errors
    /// I/O; a target that appeared meanwhile under [`Publish::NoClobber`]. A failed append
    /// is truncated back to the target's old length before the error is returned.
    pub fn commit(&mut self) -> Result<()> {
        if self.writer.is_some() {
            self.prepare()?;
        }
        let Some(tmp) = self.prepared.take() else { return Ok(()) };
        let tmp_path = tmp.path().to_path_buf();
        let result = self.publish_tmp(tmp);
        live_remove(&tmp_path);
        result
    }

    fn publish_tmp(&mut self, tmp: tempfile::NamedTempFile) -> Result<()> {
        #[cfg(test)]
        let fail = failpoint::hit(&self.target);
        #[cfg(not(test))]
        let fail = false;
        let injected = || io::Error::other("injected failure (test)");
        match self.publish {
            Publish::Overwrite => {
                let backup = self.backup()?;
                let moved = if fail {
                    Err(injected())
                } else {
                    tmp.persist(&self.target).map(drop).map_err(|e| e.error)
                };
                if let Err(e) = moved {
                    if let Some(bak) = backup {
                        let _ = std::fs::remove_file(&bak);
                        live_remove(&bak);
                    }
                    return Err(Error::io(&self.target, e, "cannot move the finished output into place"));
                }
                self.published = Some(backup.map_or(Published::Created, Published::Replaced));
            }
            Publish::NoClobber => {
                if fail {
                    return Err(Error::io(&self.target, injected(), "cannot move the finished output into place"));
                }
                tmp.persist_noclobber(&self.target).map_err(|e| {
                    Error::io(
                        &self.target,
                        e.error,
                        "the output file appeared during the run and OverwriteExisting is false",
                    )
                })?;
                self.published = Some(Published::Created);
            }
            Publish::Append => {
                let mut src = File::open(tmp.path()).map_err(|e| Error::io(tmp.path(), e, "cannot reopen the temp output"))?;
                let mut dst = OpenOptions::new()
                    .create(true)
                    .read(true)
                    .append(true)
                    .open(&self.target)
                    .map_err(|e| Error::io(&self.target, e, "cannot open the output for appending"))?;
                // Concurrent runs appending to one file take turns: rows never interleave,
                // and a truncate-back never cuts another run's rows.
                dst.lock()
                    .map_err(|e| Error::io(&self.target, e, "cannot lock the output for appending"))?;
                let old_len = dst
                    .metadata()
                    .map_err(|e| Error::io(&self.target, e, "cannot inspect the output"))?
                    .len();
                // A file whose last line has no line break would glue our first row to it.
                let needs_newline = old_len > 0 && {
                    use std::io::{Read, Seek, SeekFrom};
                    let mut last = [0u8; 1];
                    dst.seek(SeekFrom::End(-1))
                        .and_then(|_| dst.read_exact(&mut last))
                        .map_err(|e| Error::io(&self.target, e, "cannot read the end of the output"))?;
                    last[0] != b'\n'
                };
                let copied = if fail {
                    // Half a row, then "disk full".
                    dst.write_all(b"torn,ro").and(Err(io::Error::from(io::ErrorKind::StorageFull)))
                } else {
                    (if needs_newline { dst.write_all(b"\n") } else { Ok(()) })
                        .and_then(|_| if old_len == 0 { dst.write_all(&self.header) } else { Ok(()) })
                        .and_then(|_| io::copy(&mut src, &mut dst))
                        .and_then(|_| if self.durable { dst.sync_all() } else { Ok(()) })
                };
                if let Err(e) = copied {
                    // Never leave a torn row: cut the target back to what it was.
                    let _ = dst.set_len(old_len);
                    let _ = dst.sync_all();
                    return Err(Error::io(
                        &self.target,
                        e,
                        "cannot append to the output; the file was truncated back to its previous length",
                    ));
                }
                self.published = Some(Published::Appended(old_len));
                // `tmp` is deleted when dropped here.
            }
        }
        Ok(())
    }

    /// Hard-links an existing target to a backup name, for rollback. `None` when there is
    /// no target.
    fn backup(&self) -> Result<Option<PathBuf>> {
        if !self.target.exists() {
            return Ok(None);
        }
        let dir = self.target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = self
            .target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for attempt in 0..100u32 {
            let bak = dir.join(format!(".{name}.{}.{attempt}{BAK_SUFFIX}", std::process::id()));
            match std::fs::hard_link(&self.target, &bak) {
                Ok(()) => {
                    live_insert(&bak);
                    return Ok(Some(bak));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                // A filesystem without hard links: copy instead.
                Err(_) => {
                    std::fs::copy(&self.target, &bak).map_err(|e| Error::io(&bak, e, "cannot back up the output before replacing it"))?;
                    live_insert(&bak);
                    return Ok(Some(bak));
                }
            }
        }
        Err(Error::io(
            &self.target,
            io::Error::from(io::ErrorKind::AlreadyExists),
            "cannot name a backup of the output",
        ))
    }

    /// Undoes a commit: puts back the file it replaced, truncates an append, or removes a
    /// file it created. Without a commit, the same as [`AtomicOutput::abort`].
    pub fn rollback(&mut self) {
        match self.published.take() {
            Some(Published::Created) => {
                let _ = std::fs::remove_file(&self.target);
            }
            Some(Published::Replaced(bak)) => {
                let _ = std::fs::rename(&bak, &self.target);
                live_remove(&bak);
            }
            Some(Published::Appended(len)) => {
                if let Ok(f) = OpenOptions::new().write(true).open(&self.target) {
                    let _ = f.set_len(len);
                    let _ = f.sync_all();
                }
            }
            None => self.abort(),
        }
    }

    /// Discards everything written (also what `Drop` does).
    pub fn abort(&mut self) {
        if let Some(w) = self.writer.take() {
            if let Dest::Temp(t) = w.get_ref() {
                live_remove(t.path());
            }
        }
        if let Some(t) = self.prepared.take() {
            live_remove(t.path());
        }
    }
}

impl Drop for AtomicOutput {
    fn drop(&mut self) {
        self.abort();
        if let Some(Published::Replaced(bak)) = self.published.take() {
            let _ = std::fs::remove_file(&bak);
            live_remove(&bak);
        }
    }
}

impl Write for AtomicOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.writer {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("output already closed")),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.writer {
            Some(w) => w.write_all(buf),
            None => Err(io::Error::other("output already closed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

/// Moves the `write` system calls of an [`AtomicOutput`] to their own thread, so that
/// formatting the next chunk overlaps with the kernel copying the previous one into the page
/// cache (in a CSV pass-through the copy is about a third of all CPU time).
///
/// Buffers travel over a small bounded channel (backpressure: at most `DEPTH` chunks of
/// text in flight) and come back for reuse.
pub struct BackgroundWriter {
    target: PathBuf,
    tx: Option<crossbeam_channel::Sender<Vec<u8>>>,
    /// Written buffers come back here for reuse (`Settings.Engine.Pooling`; the decision
    /// matrix selected a lock-free bounded pool, `pooling = "lock-free"`).
    free: Arc<BufferPool<Vec<u8>>>,
    handle: Option<std::thread::JoinHandle<io::Result<AtomicOutput>>>,
}

const DEPTH: usize = 3;

/// Idle buffers a [`BackgroundWriter`]'s pool should hold: every buffer in flight.
pub const WRITER_POOL: usize = DEPTH + 1;

impl BackgroundWriter {
    /// Starts the writer thread, recycling buffers through a lock-free pool (the default).
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn start(out: AtomicOutput) -> Result<BackgroundWriter> {
        Self::start_pooled(out, BufferPool::new(Pooling::LockFree, WRITER_POOL, Default::default()))
    }

    /// Starts the writer thread, recycling buffers through `free`.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn start_pooled(out: AtomicOutput, free: BufferPool<Vec<u8>>) -> Result<BackgroundWriter> {
        Self::start_retrying(out, free, crate::retry::RetryPolicy::no_retry(), crate::port::CancelToken::new())
    }

    /// [`BackgroundWriter::start_pooled`], retrying a transient write error
    /// ([`transient_io`]) with `retry`'s backoff; a wait stops when `cancel` is set.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn start_retrying(
        mut out: AtomicOutput,
        free: BufferPool<Vec<u8>>,
        retry: crate::retry::RetryPolicy,
        cancel: crate::port::CancelToken,
    ) -> Result<BackgroundWriter> {
        let target = out.target().to_path_buf();
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(DEPTH);
        let free = Arc::new(free);
        let free_tx = Arc::clone(&free);
        let handle = std::thread::Builder::new()
            .name("output-writer".into())
            .spawn(move || {
                let mut rng = crate::retry::Rng::from_entropy();
                for mut buf in rx {
                    write_retrying(&mut out, &buf, &retry, &cancel, &mut rng)?;
                    buf.clear();
                    free_tx.give(buf);
                }
                Ok(out)
            })
            .map_err(|e| Error::io(&target, e, "cannot start the writer thread"))?;
        Ok(BackgroundWriter {
            target,
            tx: Some(tx),
            free,
            handle: Some(handle),
        })
    }

    /// An empty buffer, recycled when one is free.
    pub fn buffer(&self) -> Vec<u8> {
        self.free.take()
    }

    /// Queues a filled buffer for writing.
    ///
    /// # Errors
    /// The writer thread failed (its I/O error is returned).
    pub fn write(&mut self, buf: Vec<u8>) -> Result<()> {
        let sent = self.tx.as_ref().map(|tx| tx.send(buf).is_ok()).unwrap_or(false);
        if sent {
            Ok(())
        } else {
            self.finish().map(|_| ())
        }
    }

    /// Waits for every queued buffer to be written and returns the output for commit.
    ///
    /// # Errors
    /// The first I/O error of the writer thread.
    pub fn finish(&mut self) -> Result<AtomicOutput> {
        self.tx = None;
        let handle = self
            .handle
            .take()
            .ok_or_else(|| Error::Internal("writer already finished".into()))?;
        match handle.join() {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(Error::io(&self.target, e, "cannot write the output")),
            Err(_) => Err(Error::Internal("the writer thread panicked".into())),
        }
    }
}

/// True for a write error worth another try: interrupted, would block, timed out, or (Unix)
/// EIO. Anything else (no permission, no space, a directory…) is permanent.
pub fn transient_io(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) || (cfg!(unix) && e.raw_os_error() == Some(5))
}

/// One `write` of the sink's bytes. With the `failpoints` feature, the fail point
/// `flowengine::sink::write` can fail it: `return` (or `return(transient)`) with a timeout,
/// `return(permanent)` with "permission denied".
fn write_once(out: &mut AtomicOutput, buf: &[u8]) -> io::Result<usize> {
    #[cfg(feature = "failpoints")]
    fail::fail_point!("flowengine::sink::write", |arg: Option<String>| {
        Err(match arg.as_deref() {
            Some("permanent") => io::Error::from(io::ErrorKind::PermissionDenied),
            _ => io::Error::new(io::ErrorKind::TimedOut, "injected transient write error"),
        })
    });
    out.write(buf)
}

/// Writes all of `buf`, retrying a transient error ([`transient_io`]) up to `MaxAttempts`
/// tries in a row, with backoff. A `write` that fails wrote nothing, so the retry resumes
/// exactly where the file stands.
fn write_retrying(
    out: &mut AtomicOutput,
    buf: &[u8],
    retry: &crate::retry::RetryPolicy,
    cancel: &crate::port::CancelToken,
    rng: &mut crate::retry::Rng,
) -> io::Result<()> {
    let mut done = 0;
    let mut attempt = 1;
    while done < buf.len() {
        match write_once(out, &buf[done..]) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => {
                done += n;
                attempt = 1;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if transient_io(&e) && attempt < retry.max_attempts => {
                crate::retry::sleep_cancellable(retry.delay(attempt, rng), cancel)
                    .map_err(|_| io::Error::other("cancelled during a write retry"))?;
                attempt += 1;
            }
            Err(e) if transient_io(&e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{e} (after {attempt} attempts; a Retry block on the sink retries transient write errors)"),
                ))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Drop for BackgroundWriter {
    fn drop(&mut self) {
        // Waiting here guarantees the temp file is gone when an aborted run returns.
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_append_is_truncated_back() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("log.csv");
        std::fs::write(&target, "a,b\n1,2\n").unwrap();
        failpoint::arm(target.clone());
        let mut out = AtomicOutput::create(&target, Publish::Append, false, 0).unwrap();
        out.write_all(b"3,4\n").unwrap();
        let e = out.commit().unwrap_err().to_string();
        failpoint::disarm(&target);
        assert!(e.contains("truncated back"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "a,b\n1,2\n");
        drop(out);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn rollback_restores_a_replaced_file_and_removes_a_created_one() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.csv");
        let new = dir.path().join("new.csv");
        std::fs::write(&old, "before\n").unwrap();
        let mut a = AtomicOutput::create(&old, Publish::Overwrite, false, 0).unwrap();
        a.write_all(b"after\n").unwrap();
        let mut b = AtomicOutput::create(&new, Publish::Overwrite, false, 0).unwrap();
        b.write_all(b"fresh\n").unwrap();
        a.prepare().unwrap();
        b.prepare().unwrap();
        a.commit().unwrap();
        b.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "after\n");
        a.rollback();
        b.rollback();
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "before\n");
        assert!(!new.exists());
        drop((a, b));
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn a_committed_replacement_leaves_no_backup() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t.csv");
        std::fs::write(&t, "before\n").unwrap();
        let mut a = AtomicOutput::create(&t, Publish::Overwrite, false, 0).unwrap();
        a.write_all(b"after\n").unwrap();
        a.commit().unwrap();
        drop(a);
        assert_eq!(std::fs::read_to_string(&t).unwrap(), "after\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
