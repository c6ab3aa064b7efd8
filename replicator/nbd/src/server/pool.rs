//! Payload buffers one connection reuses (nbdkit keeps one buffer per worker thread for the
//! same reason).
//!
//! A READ needs a buffer for its data until the reply is written; a WRITE needs one for its
//! payload until the backend is done with it. Allocating them fresh costs little for 4 KiB, but
//! for 256 KiB–1 MiB glibc serves them from memory it gives back to the kernel when they are
//! freed (`madvise`/trim), so every request faults its pages in again and the kernel zeroes
//! them: perf showed `memset`, page faults and `clear_page` at ~15 % of the server's CPU on a
//! 1 MiB sequential read. Buffers come back here when their reply is written (READ) or when
//! the backend dropped its last reference to the payload (WRITE) and are handed out again.
//!
//! Bounded: at most [`POOL_BUFFERS_MAX`] buffers and [`POOL_BYTES_MAX`] bytes of capacity are
//! kept per connection; a buffer returned beyond either bound is freed. A buffer larger than
//! [`POOL_BUFFER_MAX`] is never kept (a rare 32 MiB request must not pin 32 MiB).

use std::sync::Mutex;

/// Most buffers kept per connection (nbdcopy keeps 64 requests in flight per connection).
pub(crate) const POOL_BUFFERS_MAX: usize = 64;
/// Most bytes of capacity kept per connection: 16 × 1 MiB (fio QD16) or 64 × 256 KiB
/// (nbdcopy). Beyond it, returned buffers are freed.
pub(crate) const POOL_BYTES_MAX: usize = 16 << 20;
/// Largest buffer kept.
pub(crate) const POOL_BUFFER_MAX: usize = 4 << 20;

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    free: Vec<Vec<u8>>,
    /// Sum of the capacities in `free`.
    bytes: usize,
}

impl BufferPool {
    /// An empty buffer with capacity for at least `len` bytes: the smallest kept one that
    /// fits, else a new one (allocated by the caller's first write into it).
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        let mut p = self.inner.lock().expect("buffer pool lock");
        let best = p
            .free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let b = p.free.swap_remove(i);
                p.bytes -= b.capacity();
                b
            }
            None => Vec::new(),
        }
    }

    /// Gives a buffer back (kept within the bounds, else freed).
    pub(crate) fn give(&self, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap == 0 || cap > POOL_BUFFER_MAX {
            return;
        }
        buf.clear();
        let mut p = self.inner.lock().expect("buffer pool lock");
        if p.free.len() < POOL_BUFFERS_MAX && p.bytes + cap <= POOL_BYTES_MAX {
            p.bytes += cap;
            p.free.push(buf);
        }
    }

    #[cfg(test)]
    fn kept(&self) -> (usize, usize) {
        let p = self.inner.lock().expect("buffer pool lock");
        (p.free.len(), p.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_smallest_buffer_that_fits_and_reuses_its_allocation() {
        let pool = BufferPool::default();
        let small = Vec::<u8>::with_capacity(4096);
        let big = Vec::<u8>::with_capacity(1 << 20);
        let big_ptr = big.as_ptr();
        pool.give(big);
        pool.give(small);
        assert_eq!(pool.kept(), (2, 4096 + (1 << 20)));
        let b = pool.take(8192);
        assert_eq!(
            b.as_ptr(),
            big_ptr,
            "the 1 MiB buffer is the only one that fits"
        );
        assert!(b.is_empty());
        let s = pool.take(100);
        assert_eq!(s.capacity(), 4096);
        assert_eq!(pool.kept(), (0, 0));
        assert_eq!(pool.take(1).capacity(), 0, "empty pool: a new buffer");
    }

    #[test]
    fn keeps_no_more_than_its_bounds() {
        let pool = BufferPool::default();
        pool.give(Vec::with_capacity(POOL_BUFFER_MAX + 1));
        assert_eq!(pool.kept(), (0, 0), "a huge buffer is never kept");
        for _ in 0..(POOL_BYTES_MAX / POOL_BUFFER_MAX + 2) {
            pool.give(Vec::with_capacity(POOL_BUFFER_MAX));
        }
        assert_eq!(
            pool.kept(),
            (POOL_BYTES_MAX / POOL_BUFFER_MAX, POOL_BYTES_MAX)
        );
        let pool = BufferPool::default();
        for _ in 0..POOL_BUFFERS_MAX + 10 {
            pool.give(Vec::with_capacity(16));
        }
        assert_eq!(pool.kept(), (POOL_BUFFERS_MAX, POOL_BUFFERS_MAX * 16));
    }

    #[test]
    fn returned_buffers_come_back_empty() {
        let pool = BufferPool::default();
        pool.give(vec![1u8; 4096]);
        let b = pool.take(4096);
        assert!(b.is_empty() && b.capacity() >= 4096);
    }
}
