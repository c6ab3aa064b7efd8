//! Zero-copy READ replies: `splice(2)` from the backend's file into a pipe, then from the pipe
//! into the client's socket.
//!
//! Why: a READ served with `pread` + `writev` copies every byte twice in this process (page
//! cache → buffer → socket); on a 1 MiB sequential read those two copies were ~45 % of the
//! server's CPU (perf), and a connection runs on one thread, so they capped a connection at one
//! core's copy bandwidth. With `splice` the pipe and then the socket hold references to the
//! page-cache pages; the only copy left is the client's own `recv`.
//!
//! Protocol guarantees kept:
//! - **Errors before data.** The whole READ is spliced into the pipe *before* its reply header
//!   is queued; a read error or a short file is found then, and the client gets an error reply
//!   as with `pread`. So a pipe must hold the whole READ: only READs whose pages fit the pipe
//!   ([`SPLICE_MAX`]) take this path, larger ones use `pread`.
//! - **What the client reads.** The pages are referenced, not copied: a write to the same range
//!   that lands after the READ was taken but before the client has received its reply can show
//!   in the reply. That write overlaps a READ still in flight, whose result the spec leaves
//!   unspecified either way; a write issued after the client received the reply cannot change
//!   it (the client's `recv` copied the bytes out).
//!
//! Bounded: at most [`PIPES_MAX`] idle pipes are kept per connection, and at most
//! [`PIPES_OPEN_MAX`] pipes are open in the whole process (two file descriptors each, so the
//! server cannot run itself out of descriptors for sockets and files under the usual
//! 1024-descriptor limit); a READ that finds no free pipe and may not open one uses `pread`.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Smallest READ sent with splice: below it two `splice` calls cost more than copying.
pub(crate) const SPLICE_MIN: usize = 64 * 1024;
/// Smallest READ sent with splice on a shared runtime, where filling the pipe goes to the
/// blocking pool (the file may block on the disk): the hand-off must cost less than the copies
/// saved.
pub(crate) const SPLICE_MIN_SHARED: usize = 256 * 1024;
/// Pipe size asked for (`F_SETPIPE_SZ`; `fs.pipe-max-size`, 1 MiB by default, caps it for
/// unprivileged servers).
const PIPE_BYTES: usize = 1 << 20;
/// Largest READ sent with splice: its pages must fit one pipe (an unaligned READ spans one page
/// more than its length, so a 1 MiB READ needs a page-aligned offset; `Pipe::fits`).
pub(crate) const SPLICE_MAX: usize = PIPE_BYTES;
/// Idle pipes kept per connection (fio's sequential jobs keep 16 READs in flight).
pub(crate) const PIPES_MAX: usize = 16;
/// Pipes open at once in the process (512 descriptors); beyond it READs are copied.
pub(crate) const PIPES_OPEN_MAX: usize = 256;
const PAGE: usize = 4096;

/// Counts open pipes against a limit.
#[derive(Debug)]
pub(crate) struct OpenPipes {
    open: AtomicUsize,
    max: usize,
}

impl OpenPipes {
    const fn new(max: usize) -> Self {
        Self {
            open: AtomicUsize::new(0),
            max,
        }
    }

    fn acquire(&self) -> bool {
        let was = self.open.fetch_add(1, Ordering::AcqRel);
        if was >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }
}

/// Every connection's pipes (see [`PIPES_OPEN_MAX`]).
static OPEN_PIPES: OpenPipes = OpenPipes::new(PIPES_OPEN_MAX);

/// A pipe holding one READ's data on its way to the socket.
#[derive(Debug)]
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Pages the pipe holds.
    pages: usize,
    counted: &'static OpenPipes,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.counted.open.fetch_sub(1, Ordering::AcqRel);
    }
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

impl Pipe {
    /// A new pipe counted in `counted`, or `None` at its limit or on failure.
    fn new(counted: &'static OpenPipes) -> Option<Self> {
        if !counted.acquire() {
            return None;
        }
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two fds into the array, which has room for two.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            counted.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        // SAFETY: pipe2 succeeded, so both are open fds that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let want = libc::c_int::try_from(PIPE_BYTES).expect("1 MiB fits a c_int");
        // SAFETY: plain fcntl on an fd we own. Failure (a lower pipe-max-size) leaves the
        // default size, read back below.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, want) };
        // SAFETY: as above.
        let bytes = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        Some(Self {
            read,
            write,
            pages: usize::try_from(bytes).unwrap_or(0) / PAGE,
            counted,
        })
    }

    /// Whether a READ of `len` bytes at `offset` fits (one page per pipe slot).
    fn fits(&self, offset: u64, len: usize) -> bool {
        let head = usize::try_from(offset % PAGE as u64).expect("below a page");
        (head + len).div_ceil(PAGE) <= self.pages
    }

    /// Moves `len` bytes of `file` at `offset` into the (empty) pipe, blocking on the file if
    /// its pages are not cached. A short file is an error, as for `pread`.
    pub(crate) fn fill(&self, file: &File, offset: u64, len: usize) -> io::Result<()> {
        let mut off = libc::loff_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        let mut done = 0usize;
        while done < len {
            // SAFETY: splice between two fds we own; `off` is a valid loff_t the kernel
            // advances; no user memory is passed.
            let n = unsafe {
                libc::splice(
                    file.as_raw_fd(),
                    &raw mut off,
                    self.write.as_raw_fd(),
                    std::ptr::null_mut(),
                    len - done,
                    libc::SPLICE_F_NONBLOCK,
                )
            };
            if n < 0 {
                let e = last_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the backing file is shorter than the export (was it truncated?)",
                ));
            }
            done += usize::try_from(n).expect("positive");
        }
        Ok(())
    }

    /// Moves up to `len` bytes from the pipe into `socket` without blocking: bytes moved, or
    /// `WouldBlock` when the socket is full.
    pub(crate) fn drain_into(&self, socket: RawFd, len: usize) -> io::Result<usize> {
        loop {
            // SAFETY: splice between the pipe we own and a socket the caller keeps open for
            // the call; no user memory is passed.
            let n = unsafe {
                libc::splice(
                    self.read.as_raw_fd(),
                    std::ptr::null_mut(),
                    socket,
                    std::ptr::null_mut(),
                    len,
                    libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
                )
            };
            if n >= 0 {
                return Ok(usize::try_from(n).expect("non-negative"));
            }
            let e = last_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
        }
    }
}

/// The pipes of one connection (see the module documentation).
#[derive(Debug)]
pub(crate) struct PipePool {
    free: Mutex<Vec<Pipe>>,
    counted: &'static OpenPipes,
    /// The backend's file cannot be spliced from (a filesystem without `splice_read`): every
    /// READ of this connection is copied, rather than failing a splice first each time.
    unsupported: AtomicBool,
}

impl Default for PipePool {
    fn default() -> Self {
        Self {
            free: Mutex::default(),
            counted: &OPEN_PIPES,
            unsupported: AtomicBool::new(false),
        }
    }
}

impl PipePool {
    /// An empty pipe that holds a READ of `len` bytes at `offset`, or `None` (use `pread`).
    pub(crate) fn take(&self, offset: u64, len: usize) -> Option<Pipe> {
        if !(SPLICE_MIN..=SPLICE_MAX).contains(&len) || self.unsupported.load(Ordering::Relaxed) {
            return None;
        }
        let kept = self.free.lock().expect("pipe pool lock").pop();
        let pipe = match kept {
            Some(p) => p,
            None => Pipe::new(self.counted)?,
        };
        if pipe.fits(offset, len) {
            Some(pipe)
        } else {
            // A smaller pipe than asked for (a low `fs.pipe-max-size`): kept for smaller READs.
            self.give(pipe);
            None
        }
    }

    /// Notes a failed [`Pipe::fill`] (the READ is then copied): when it says the file cannot be
    /// spliced at all, this connection stops trying.
    pub(crate) fn failed(&self, e: &io::Error) {
        if matches!(
            e.raw_os_error(),
            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
        ) {
            tracing::debug!(error = %e, "the backend's file cannot be spliced; copying READs");
            self.unsupported.store(true, Ordering::Relaxed);
        }
    }

    /// Gives back a pipe that was emptied completely (any other is dropped: leftover bytes
    /// would go out with the next reply).
    pub(crate) fn give(&self, pipe: Pipe) {
        let mut free = self.free.lock().expect("pipe pool lock");
        if free.len() < PIPES_MAX {
            free.push(pipe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    /// No more pipes are open than the limit; a closed one makes room again.
    #[test]
    fn open_pipes_are_bounded() {
        static FOUR: OpenPipes = OpenPipes::new(4);
        let pool = PipePool {
            free: Mutex::default(),
            counted: &FOUR,
            unsupported: AtomicBool::new(false),
        };
        let held: Vec<Pipe> = (0..4)
            .map(|_| pool.take(0, SPLICE_MIN).expect("a pipe"))
            .collect();
        assert!(
            pool.take(0, SPLICE_MIN).is_none(),
            "a fifth pipe is refused"
        );
        drop(held);
        assert_eq!(FOUR.open.load(Ordering::Acquire), 0);
        let p = pool.take(0, SPLICE_MIN).expect("room again");
        pool.give(p);
        let _again = pool.take(0, SPLICE_MIN).expect("the kept pipe");
        assert_eq!(
            FOUR.open.load(Ordering::Acquire),
            1,
            "a kept pipe is reused, not reopened"
        );
    }

    #[test]
    fn a_read_goes_through_the_pipe_unchanged_and_a_short_file_is_an_error() {
        let data: Vec<u8> = (0..400_000u32)
            .map(|i| (i % 251).to_le_bytes()[0])
            .collect();
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(&data).expect("write");
        let file = f.as_file();
        let pool = PipePool::default();
        assert!(pool.take(0, SPLICE_MIN - 1).is_none(), "small reads copy");
        assert!(pool.take(0, SPLICE_MAX + 1).is_none(), "large reads copy");
        assert!(
            pool.take(4096, SPLICE_MAX).is_some(),
            "an aligned 1 MiB READ fits"
        );
        assert!(
            pool.take(512, SPLICE_MAX).is_none(),
            "an unaligned one does not"
        );
        let (a, mut b) = UnixStream::pair().expect("socket pair");
        a.set_nonblocking(true).expect("nonblocking");
        for (offset, len) in [(0u64, 200_000usize), (12_345, 300_000), (4096, SPLICE_MIN)] {
            let pipe = pool.take(offset, len).expect("a pipe");
            pipe.fill(file, offset, len).expect("fill");
            let mut sent = 0;
            let mut got = vec![0u8; len];
            let mut recvd = 0;
            while recvd < len {
                if sent < len {
                    match pipe.drain_into(a.as_raw_fd(), len - sent) {
                        Ok(n) => sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("drain: {e}"),
                    }
                }
                recvd += b.read(&mut got[recvd..]).expect("recv");
            }
            let from = usize::try_from(offset).expect("small");
            assert_eq!(got, &data[from..from + len]);
            pool.give(pipe);
        }
        let pipe = pool.take(300_000, 200_000).expect("a pipe");
        let e = pipe.fill(file, 300_000, 200_000).expect_err("past the end");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        pool.failed(&e);
        assert!(
            pool.take(0, SPLICE_MIN).is_some(),
            "a short file is no reason to stop"
        );
        pool.failed(&io::Error::from_raw_os_error(libc::EINVAL));
        assert!(
            pool.take(0, SPLICE_MIN).is_none(),
            "a file that cannot be spliced is copied"
        );
    }
}
