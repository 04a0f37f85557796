//! Output files that appear only when the run succeeds.
//!
//! Rows go to a temp file in the target's directory (same filesystem, so the final rename is
//! atomic). [`AtomicOutput::commit`] renames it into place; dropping an uncommitted output —
//! on error, cancellation or panic — deletes the temp file. A failed run therefore leaves
//! neither a half-written output nor a temp file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::error::{Error, Result};

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

/// A buffered writer over a temp file that becomes `target` on commit.
pub struct AtomicOutput {
    target: PathBuf,
    publish: Publish,
    /// fsync before publishing, so the file also survives a power loss.
    durable: bool,
    writer: Option<BufWriter<tempfile::NamedTempFile>>,
}

impl AtomicOutput {
    /// Opens the temp file next to `target`.
    ///
    /// # Errors
    /// The directory is missing (and `create_dirs` is false), not writable, or the target
    /// exists under [`Publish::NoClobber`].
    pub fn create(target: &Path, publish: Publish, create_dirs: bool, buffer: usize) -> Result<AtomicOutput> {
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
                target,
                io::Error::from(io::ErrorKind::AlreadyExists),
                "the output file exists and OverwriteExisting is false; remove it, set OverwriteExisting: true, or AppendMode: true",
            ));
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        let mut builder = tempfile::Builder::new();
        // tempfile creates 0600 files; an output file gets the usual 0644 (less the umask).
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
        let tmp = builder
            .prefix(&format!(".{name}."))
            .suffix(".flowengine-tmp")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e, "cannot create a temp file in the output directory"))?;
        Ok(AtomicOutput {
            target: target.to_path_buf(),
            publish,
            durable: false,
            writer: Some(BufWriter::with_capacity(buffer.max(4096), tmp)),
        })
    }

    /// Also fsync the data before publishing (the rename is atomic either way; without
    /// fsync a power loss right after the run may leave the file empty on some filesystems).
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// The final path.
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

    /// Publishes the file.
    ///
    /// # Errors
    /// I/O; a target that appeared meanwhile under [`Publish::NoClobber`].
    pub fn commit(&mut self) -> Result<()> {
        let Some(w) = self.writer.take() else { return Ok(()) };
        let tmp = w
            .into_inner()
            .map_err(|e| Error::io(&self.target, e.into_error(), "cannot write the output"))?;
        if self.durable {
            tmp.as_file()
                .sync_all()
                .map_err(|e| Error::io(&self.target, e, "cannot sync the output"))?;
        }
        match self.publish {
            Publish::Overwrite => {
                tmp.persist(&self.target)
                    .map_err(|e| Error::io(&self.target, e.error, "cannot move the finished output into place"))?;
            }
            Publish::NoClobber => {
                tmp.persist_noclobber(&self.target).map_err(|e| {
                    Error::io(
                        &self.target,
                        e.error,
                        "the output file appeared during the run and OverwriteExisting is false",
                    )
                })?;
            }
            Publish::Append => {
                let mut src = File::open(tmp.path()).map_err(|e| Error::io(tmp.path(), e, "cannot reopen the temp output"))?;
                let mut dst = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.target)
                    .map_err(|e| Error::io(&self.target, e, "cannot open the output for appending"))?;
                io::copy(&mut src, &mut dst).map_err(|e| Error::io(&self.target, e, "cannot append to the output"))?;
                if self.durable {
                    dst.sync_all().map_err(|e| Error::io(&self.target, e, "cannot sync the output"))?;
                }
                // `tmp` is deleted when dropped here.
            }
        }
        Ok(())
    }

    /// Discards everything written (also what `Drop` does).
    pub fn abort(&mut self) {
        self.writer = None;
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
    /// Written buffers come back here for reuse: a lock-free bounded pool, the strategy the
    /// decision matrix selected (`pooling = "lock-free"`).
    free: Arc<ArrayQueue<Vec<u8>>>,
    handle: Option<std::thread::JoinHandle<io::Result<AtomicOutput>>>,
}

const DEPTH: usize = 3;

impl BackgroundWriter {
    /// Starts the writer thread.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn start(mut out: AtomicOutput) -> Result<BackgroundWriter> {
        let target = out.target().to_path_buf();
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(DEPTH);
        let free = Arc::new(ArrayQueue::new(DEPTH + 1));
        let free_tx = Arc::clone(&free);
        let handle = std::thread::Builder::new()
            .name("output-writer".into())
            .spawn(move || {
                for mut buf in rx {
                    out.write_all(&buf)?;
                    buf.clear();
                    let _ = free_tx.push(buf);
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
        self.free.pop().unwrap_or_default()
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

impl Drop for BackgroundWriter {
    fn drop(&mut self) {
        // Waiting here guarantees the temp file is gone when an aborted run returns.
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
