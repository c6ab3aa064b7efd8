//! A [`Backend`] over a regular file or a block device.
//!
//! I/O path (measured with `benches/scripts/nbd-vs-nbdkit.sh`, see docs/nbd.md): a READ first
//! tries `preadv2(RWF_NOWAIT)` right on the runtime thread — it succeeds when the data is in the
//! page cache and costs no thread hop; when it would block (EAGAIN) or comes back short, the
//! rest goes to tokio's blocking pool. Writes do the same with `pwritev2(RWF_NOWAIT)` where the
//! filesystem supports non-blocking buffered writes; FUA writes use `RWF_DSYNC` on the pool.
//! FLUSH is `fdatasync`, TRIM punches a hole, WRITE_ZEROES punches a hole or uses
//! `FALLOC_FL_ZERO_RANGE` (with NO_HOLE), BLOCK_STATUS walks `SEEK_DATA`/`SEEK_HOLE`, CACHE is
//! `POSIX_FADV_WILLNEED`.
//!
//! Two rules a sysadmin would otherwise learn the hard way:
//! - **A failed flush is final.** When `fdatasync` (or the sync part of a FUA write) fails,
//!   Linux reports the write-back error once and may drop the dirty pages: a later
//!   `fdatasync` succeeds although data acknowledged before it never reached the disk
//!   ("fsyncgate"). So after one failure every later FLUSH fails too (`EIO`, naming the first
//!   error), as PostgreSQL does; the export must be checked and reopened (replicatord:
//!   `down`/`up`, DRBD's `on-io-error detach` in spirit).
//! - **Block devices take `fallocate` only in whole logical blocks** (`EINVAL` otherwise), while
//!   we advertise a minimum block size of 1. TRIM is rounded inward to those blocks (the spec
//!   allows it: a trim is a hint); WRITE_ZEROES writes the unaligned head and tail as zero bytes
//!   and zeroes the aligned middle with `fallocate`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::backend::{Backend, BoxFuture};
use super::on_connection_thread;
use crate::proto::{STATE_HOLE, STATE_ZERO};
use crate::reply::{Extent, MAX_EXTENTS};
use crate::request::ZeroFlags;
use crate::session::{BlockSizes, Capabilities};

/// How the file backend issues reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    /// Default. On a connection thread of its own ([`ServerConfig::thread_per_connection`]):
    /// plain blocking calls right there, as nbdkit does — no hand-off, and a slow disk stalls
    /// only that connection. Anywhere else (a shared runtime): try `RWF_NOWAIT` inline, fall
    /// back to the blocking pool, so a runtime thread never blocks on the disk.
    ///
    /// [`ServerConfig::thread_per_connection`]: super::ServerConfig::thread_per_connection
    NowaitThenPool,
    /// Always use tokio's blocking pool (one thread hop per request).
    Pool,
    /// Plain blocking `pread`/`pwrite` on the runtime thread (FUA, flush, trim and zeroing still
    /// go to the pool). Fastest on page-cache workloads; a slow disk stalls a runtime thread.
    Inline,
}

/// Options for [`FileBackend::open`].
#[derive(Clone, Copy, Debug)]
pub struct FileOptions {
    /// Open read-only and advertise `NBD_FLAG_READ_ONLY`.
    pub read_only: bool,
    /// Export only the first `size` bytes (replicatord keeps internal meta-data after them).
    /// `None`: the whole file or device.
    pub size: Option<u64>,
    /// I/O strategy.
    pub io: IoMode,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            read_only: false,
            size: None,
            io: IoMode::NowaitThenPool,
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// Shared with the server's zero-copy READ path ([`Backend::zero_copy_file`]).
    file: Arc<File>,
    size: u64,
    read_only: bool,
    io: IoMode,
    nowait_write: AtomicBool,
    punch_hole: AtomicBool,
    zero_range: AtomicBool,
    /// `fallocate` granularity: the logical block size of a block device, 1 for a file.
    falloc_align: u64,
    /// The first failed sync, if any: every later FLUSH fails with it (module docs).
    sync_failed: Mutex<Option<String>>,
}

/// A file or block device exported as is. Cheap to clone (shared handle).
#[derive(Clone, Debug)]
pub struct FileBackend {
    inner: Arc<Inner>,
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

fn last_errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn to_off(v: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(v).map_err(|_| errno(libc::EOVERFLOW))
}

/// Runs blocking file work on tokio's blocking pool.
async fn pool<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("blocking I/O task failed: {e}")))?
}

impl FileBackend {
    /// Opens `path` (a regular file or a block device).
    pub fn open(path: &Path, opts: FileOptions) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(!opts.read_only)
            .open(path)?;
        Self::from_file(file, opts)
    }

    /// Wraps an open file.
    pub fn from_file(file: File, opts: FileOptions) -> io::Result<Self> {
        use std::io::{Seek, SeekFrom};
        // SEEK_END works for block devices too, where metadata().len() is 0.
        let len = (&file).seek(SeekFrom::End(0))?;
        let size = match opts.size {
            Some(s) if s > len => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("export size {s} is larger than the backing store ({len} bytes)"),
                ));
            }
            Some(s) => s,
            None => len,
        };
        let falloc_align = logical_block_size(&file)?;
        Ok(Self {
            inner: Arc::new(Inner {
                file: Arc::new(file),
                size,
                read_only: opts.read_only,
                io: opts.io,
                nowait_write: AtomicBool::new(true),
                punch_hole: AtomicBool::new(true),
                zero_range: AtomicBool::new(true),
                falloc_align,
                sync_failed: Mutex::new(None),
            }),
        })
    }

    /// The exported size.
    pub fn len(&self) -> u64 {
        self.inner.size
    }

    /// Whether the export is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.size == 0
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read_at(&self, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        self.read_into(offset, len, Vec::new()).await
    }

    /// Reads `len` bytes at `offset` into `buf`, reusing its allocation (its contents are
    /// discarded), and returns it. The bytes are read into the buffer's spare capacity, never
    /// zeroed first: a 1 MiB READ into a fresh zeroed buffer cost a `memset` and, once glibc
    /// had trimmed the freed heap, 256 page faults (perf: ~15 % of a 1 MiB sequential read).
    pub async fn read_into(&self, offset: u64, len: u32, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
        let want = len as usize;
        buf.clear();
        buf.reserve_exact(want);
        match self.inner.io {
            IoMode::NowaitThenPool if on_connection_thread() => {
                self.inner.read_full(&mut buf, want, offset)?;
                return Ok(buf);
            }
            IoMode::NowaitThenPool => self.inner.fill(&mut buf, want, offset, libc::RWF_NOWAIT)?,
            IoMode::Inline => {
                self.inner.read_full(&mut buf, want, offset)?;
                return Ok(buf);
            }
            IoMode::Pool => {}
        }
        if buf.len() == want {
            return Ok(buf);
        }
        let inner = self.inner.clone();
        self.off_thread(move || {
            inner.read_full(&mut buf, want, offset)?;
            Ok(buf)
        })
        .await
    }

    /// Runs blocking work: right here on a connection thread of its own (nothing else waits
    /// on this thread), else on tokio's blocking pool.
    async fn off_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        if self.inner.io != IoMode::Pool && on_connection_thread() {
            f()
        } else {
            pool(f).await
        }
    }

    /// Writes `data` at `offset` (durably with `fua`).
    pub async fn write_at(&self, offset: u64, data: Bytes, fua: bool) -> io::Result<()> {
        let mut done = 0usize;
        if !fua && self.inner.io == IoMode::Inline {
            return self.inner.file.write_all_at(&data, offset);
        }
        if !fua
            && self.inner.io == IoMode::NowaitThenPool
            && !on_connection_thread()
            && self.inner.nowait_write.load(Ordering::Relaxed)
        {
            done = self.inner.nowait_write(&data, offset)?;
        }
        if done == data.len() {
            return Ok(());
        }
        let inner = self.inner.clone();
        self.off_thread(move || inner.write_full(&data[done..], offset + done as u64, fua))
            .await
    }

    /// `fdatasync`. Once a sync has failed, every later one fails too (module docs).
    pub async fn sync(&self) -> io::Result<()> {
        self.inner.check_sync()?;
        let inner = self.inner.clone();
        self.off_thread(move || inner.sync_data()).await
    }
}

/// The logical block size of a block device (what `fallocate` on it must be aligned to), or 1
/// for anything else.
fn logical_block_size(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::FileTypeExt;
    if !file.metadata()?.file_type().is_block_device() {
        return Ok(1);
    }
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one c_int through the pointer, which points to `size`; the fd
    // is open for the call.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), libc::BLKSSZGET, &raw mut size) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    match u64::try_from(size) {
        Ok(s) if s.is_power_of_two() => Ok(s),
        _ => Ok(512),
    }
}

impl Inner {
    /// Fails if a sync has failed before: its write-back error may have cost acknowledged
    /// writes, which no later sync can vouch for.
    fn check_sync(&self) -> io::Result<()> {
        match &*self.sync_failed.lock().expect("sync state lock") {
            None => Ok(()),
            Some(first) => Err(io::Error::other(format!(
                "an earlier flush failed ({first}); writes acknowledged before it may not be on \
                     stable storage, so no flush can succeed on this export: check the disk and reopen it"
            ))),
        }
    }

    /// Records a failed sync (the first one is kept for the message).
    fn sync_failed(&self, e: &io::Error) {
        let mut failed = self.sync_failed.lock().expect("sync state lock");
        if failed.is_none() {
            tracing::error!(error = %e, "flush failed; every later flush of this export will fail");
            *failed = Some(e.to_string());
        }
    }

    /// `fdatasync`, recording a failure (every sync of the file goes through here).
    fn sync_data(&self) -> io::Result<()> {
        self.check_sync()?;
        self.file.sync_data().inspect_err(|e| self.sync_failed(e))
    }

    /// Appends to `buf` the bytes at `offset + buf.len()` until it holds `want` bytes, reading
    /// into its spare capacity with `preadv2(flags)`. Stops early, without error, at the end of
    /// the file or — with `RWF_NOWAIT` — where the read would block.
    fn fill(
        &self,
        buf: &mut Vec<u8>,
        want: usize,
        offset: u64,
        flags: libc::c_int,
    ) -> io::Result<()> {
        buf.reserve_exact(want.saturating_sub(buf.len()));
        while buf.len() < want {
            let done = buf.len();
            let spare = &mut buf.spare_capacity_mut()[..want - done];
            let iov = libc::iovec {
                iov_base: spare.as_mut_ptr().cast(),
                iov_len: spare.len(),
            };
            // SAFETY: `iov` points into `buf`'s spare capacity, valid for writes of `iov_len`
            // bytes for the duration of the call (nothing else borrows `buf`); the fd is open
            // for the life of `self`.
            let n = unsafe {
                libc::preadv2(
                    self.file.as_raw_fd(),
                    &iov,
                    1,
                    to_off(offset + done as u64)?,
                    flags,
                )
            };
            if n < 0 {
                match last_errno() {
                    libc::EINTR => continue,
                    libc::EAGAIN | libc::EOPNOTSUPP if flags & libc::RWF_NOWAIT != 0 => {
                        return Ok(());
                    }
                    e => return Err(errno(e)),
                }
            }
            if n == 0 {
                return Ok(()); // end of file: the caller decides
            }
            let n = usize::try_from(n).expect("preadv2 returned a positive count");
            assert!(n <= want - done, "preadv2 read more than it was given");
            // SAFETY: the kernel initialised the first `n` bytes of the spare capacity, and
            // `done + n <= want <= capacity`.
            unsafe { buf.set_len(done + n) };
        }
        Ok(())
    }

    fn nowait_write(&self, data: &[u8], offset: u64) -> io::Result<usize> {
        let mut done = 0usize;
        while done < data.len() {
            let iov = libc::iovec {
                iov_base: data[done..].as_ptr().cast_mut().cast(),
                iov_len: data.len() - done,
            };
            // SAFETY: `iov` points into `data`, valid for reads of `iov_len` bytes for the call;
            // pwritev2 does not write through it.
            let n = unsafe {
                libc::pwritev2(
                    self.file.as_raw_fd(),
                    &iov,
                    1,
                    to_off(offset + done as u64)?,
                    libc::RWF_NOWAIT,
                )
            };
            if n < 0 {
                return match last_errno() {
                    libc::EAGAIN | libc::EINTR => Ok(done),
                    libc::EOPNOTSUPP => {
                        // The filesystem has no non-blocking buffered writes: stop trying.
                        self.nowait_write.store(false, Ordering::Relaxed);
                        Ok(done)
                    }
                    e => Err(errno(e)),
                };
            }
            done += n as usize;
        }
        Ok(done)
    }

    /// Fills `buf` up to `want` bytes (blocking), or fails: a short file is an error.
    fn read_full(&self, buf: &mut Vec<u8>, want: usize, offset: u64) -> io::Result<()> {
        self.fill(buf, want, offset, 0)?;
        if buf.len() < want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the backing file is shorter than the export (was it truncated?)",
            ));
        }
        Ok(())
    }

    fn write_full(&self, data: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        if !fua {
            return self.file.write_all_at(data, offset);
        }
        let mut done = 0usize;
        while done < data.len() {
            let iov = libc::iovec {
                iov_base: data[done..].as_ptr().cast_mut().cast(),
                iov_len: data.len() - done,
            };
            // SAFETY: as in `nowait_write`: `iov` borrows `data` for the duration of the call.
            let n = unsafe {
                libc::pwritev2(
                    self.file.as_raw_fd(),
                    &iov,
                    1,
                    to_off(offset + done as u64)?,
                    libc::RWF_DSYNC,
                )
            };
            if n < 0 {
                match last_errno() {
                    libc::EINTR => continue,
                    libc::EOPNOTSUPP => {
                        self.file
                            .write_all_at(&data[done..], offset + done as u64)?;
                        return self.sync_data();
                    }
                    e => {
                        // The sync half of RWF_DSYNC may have consumed a write-back error.
                        let e = errno(e);
                        self.sync_failed(&e);
                        return Err(e);
                    }
                }
            }
            done += n as usize;
        }
        Ok(())
    }

    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        // SAFETY: plain syscall on an fd we own; no memory is passed.
        let r =
            unsafe { libc::fallocate(self.file.as_raw_fd(), mode, to_off(offset)?, to_off(len)?) };
        if r == 0 {
            Ok(())
        } else {
            Err(errno(last_errno()))
        }
    }

    fn punch(&self, offset: u64, len: u64) -> io::Result<bool> {
        if !self.punch_hole.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        ) {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
                ) =>
            {
                self.punch_hole.store(false, Ordering::Relaxed);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn zero_range(&self, offset: u64, len: u64) -> io::Result<bool> {
        if !self.zero_range.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match self.fallocate(
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        ) {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL)
                ) =>
            {
                self.zero_range.store(false, Ordering::Relaxed);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The part of `[offset, offset+len)` made of whole `fallocate` blocks: `(start, end)`,
    /// empty when `start >= end`.
    fn aligned_inside(&self, offset: u64, len: u64) -> (u64, u64) {
        let a = self.falloc_align;
        let end = offset + len;
        (offset.next_multiple_of(a), end - end % a)
    }

    /// TRIM: punches the whole blocks inside the range (a hint: doing less is correct).
    fn trim(&self, offset: u64, len: u64) -> io::Result<()> {
        let (start, end) = self.aligned_inside(offset, len);
        if start < end {
            self.punch(start, end - start)?;
        }
        Ok(())
    }

    /// Writes `len` zero bytes at `offset`, 1 MiB at a time.
    fn write_zero_bytes(&self, offset: u64, len: u64) -> io::Result<()> {
        const CHUNK: usize = 1 << 20;
        let zeroes = vec![0u8; usize::try_from(len).map_or(CHUNK, |l| l.min(CHUNK))];
        let mut pos = 0u64;
        while pos < len {
            let n = usize::try_from(len - pos).map_or(zeroes.len(), |r| r.min(zeroes.len()));
            self.file.write_all_at(&zeroes[..n], offset + pos)?;
            pos += n as u64;
        }
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> io::Result<()> {
        // fallocate takes whole blocks: the middle goes to it, an unaligned head and tail
        // (less than two blocks in all, so still "fast") are written as zero bytes.
        let (start, end) = self.aligned_inside(offset, len);
        let (start, end) = if start < end {
            (start, end)
        } else {
            (offset, offset)
        };
        let fast_done = start == end
            || if flags.no_hole {
                self.zero_range(start, end - start)?
            } else {
                self.punch(start, end - start)? || self.zero_range(start, end - start)?
            };
        if !fast_done {
            if flags.fast {
                return Err(errno(libc::EOPNOTSUPP));
            }
            self.write_zero_bytes(offset, len)?;
        } else {
            self.write_zero_bytes(offset, start.max(offset) - offset)?;
            let tail_from = if start == end { offset } else { end };
            self.write_zero_bytes(tail_from, offset + len - tail_from)?;
        }
        if flags.fua { self.sync_data() } else { Ok(()) }
    }

    fn lseek(&self, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
        // SAFETY: plain syscall on an fd we own. (It moves the shared file offset, which nothing
        // here uses: every read and write is positional.)
        let r = unsafe { libc::lseek(self.file.as_raw_fd(), to_off(offset)?, whence) };
        if r >= 0 {
            return Ok(Some(r as u64));
        }
        match last_errno() {
            libc::ENXIO => Ok(None),
            e => Err(errno(e)),
        }
    }

    fn block_status(&self, offset: u64, len: u64) -> io::Result<Vec<Extent>> {
        let end = offset.saturating_add(len).min(self.size);
        let mut out = Vec::new();
        let mut pos = offset;
        const HOLE: u32 = STATE_HOLE | STATE_ZERO;
        while pos < end && out.len() < MAX_EXTENTS {
            let data = match self.lseek(pos, libc::SEEK_DATA) {
                Ok(d) => d,
                // No SEEK_DATA here (EINVAL): call it all data.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    return Ok(vec![Extent {
                        len: end - offset,
                        flags: 0,
                    }]);
                }
                Err(e) => return Err(e),
            };
            match data {
                None => {
                    out.push(Extent {
                        len: end - pos,
                        flags: HOLE,
                    });
                    break;
                }
                Some(d) if d > pos => {
                    let stop = d.min(end);
                    out.push(Extent {
                        len: stop - pos,
                        flags: HOLE,
                    });
                    pos = stop;
                }
                Some(_) => {
                    let hole = self.lseek(pos, libc::SEEK_HOLE)?.unwrap_or(end);
                    let stop = hole.min(end).max(pos + 1);
                    out.push(Extent {
                        len: stop - pos,
                        flags: 0,
                    });
                    pos = stop;
                }
            }
        }
        if out.is_empty() {
            out.push(Extent {
                len: end.saturating_sub(offset).max(1),
                flags: 0,
            });
        }
        Ok(out)
    }
}

impl Backend for FileBackend {
    fn size(&self) -> u64 {
        self.inner.size
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            read_only: self.inner.read_only,
            ..Capabilities::FULL
        }
    }

    fn block_sizes(&self) -> BlockSizes {
        BlockSizes::default()
    }

    fn zero_copy_file(&self) -> Option<Arc<File>> {
        Some(self.inner.file.clone())
    }

    fn read(&self, offset: u64, len: u32) -> BoxFuture<'_, io::Result<Vec<u8>>> {
        Box::pin(self.read_at(offset, len))
    }

    fn read_into(&self, offset: u64, len: u32, buf: Vec<u8>) -> BoxFuture<'_, io::Result<Vec<u8>>> {
        Box::pin(FileBackend::read_into(self, offset, len, buf))
    }

    fn write(&self, offset: u64, data: Bytes, fua: bool) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(self.write_at(offset, data, fua))
    }

    fn flush(&self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(self.sync())
    }

    fn trim(&self, offset: u64, len: u64, fua: bool) -> BoxFuture<'_, io::Result<()>> {
        let inner = self.inner.clone();
        Box::pin(self.off_thread(move || {
            // A trim is a hint: where holes cannot be punched, doing nothing is correct.
            inner.trim(offset, len)?;
            if fua { inner.sync_data() } else { Ok(()) }
        }))
    }

    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        flags: ZeroFlags,
    ) -> BoxFuture<'_, io::Result<()>> {
        let inner = self.inner.clone();
        Box::pin(self.off_thread(move || inner.write_zeroes(offset, len, flags)))
    }

    fn cache(&self, offset: u64, len: u64) -> BoxFuture<'_, io::Result<()>> {
        let inner = self.inner.clone();
        Box::pin(self.off_thread(move || {
            // SAFETY: plain syscall on an fd we own; no memory is passed.
            let r = unsafe {
                libc::posix_fadvise(
                    inner.file.as_raw_fd(),
                    to_off(offset)?,
                    to_off(len)?,
                    libc::POSIX_FADV_WILLNEED,
                )
            };
            if r == 0 { Ok(()) } else { Err(errno(r)) }
        }))
    }

    fn block_status(&self, offset: u64, len: u64) -> BoxFuture<'_, io::Result<Vec<Extent>>> {
        let inner = self.inner.clone();
        Box::pin(self.off_thread(move || inner.block_status(offset, len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(data: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(data).expect("write");
        f
    }

    /// Reads land in the given buffer's allocation, with exactly the file's bytes, whatever
    /// the buffer held before, in every I/O mode.
    #[tokio::test]
    async fn read_into_reuses_the_buffer_and_returns_exactly_the_data() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i * 7 + i / 256).to_le_bytes()[0])
            .collect();
        let f = file_with(&data);
        for io in [IoMode::NowaitThenPool, IoMode::Pool, IoMode::Inline] {
            let b = FileBackend::open(
                f.path(),
                FileOptions {
                    io,
                    ..FileOptions::default()
                },
            )
            .expect("open");
            let old = vec![0xAAu8; 200_000];
            let ptr = old.as_ptr();
            let got = b.read_into(1234, 150_000, old).await.expect("read");
            assert_eq!(got.as_ptr(), ptr, "{io:?}: the allocation is reused");
            assert_eq!(got, &data[1234..151_234], "{io:?}");
            // A buffer too small grows; an empty one is allocated.
            let got = b.read_into(0, 300_000, vec![1u8; 10]).await.expect("read");
            assert_eq!(got, data, "{io:?}");
            assert_eq!(
                b.read_at(299_990, 10).await.expect("read"),
                &data[299_990..]
            );
        }
    }

    /// A backing file shorter than the export fails the read (never a short buffer).
    #[tokio::test]
    async fn reading_past_a_truncated_backing_file_is_an_error() {
        let f = file_with(&[5u8; 8192]);
        let b = FileBackend::open(f.path(), FileOptions::default()).expect("open");
        f.as_file().set_len(4096).expect("truncate");
        let e = b.read_at(0, 8192).await.expect_err("short file");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("shorter than the export"), "{e}");
    }
}
