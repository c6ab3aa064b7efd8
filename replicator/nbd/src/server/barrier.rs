//! The export-wide FLUSH barrier (group commit).
//!
//! The promise (`NBD_FLAG_CAN_MULTI_CONN`, spec "Ordering of messages and writes"): a FLUSH
//! covers every write whose reply was sent, on any connection, before the FLUSH was received.
//! A backend flush (fdatasync) covers the writes completed before it *started*. So a FLUSH that
//! arrives while a backend flush is running cannot ride on that one; it must wait for the next.
//!
//! Tickets make that exact: each FLUSH takes a ticket on arrival. One backend flush runs at a
//! time (a fair mutex). Before starting, the runner notes the highest ticket issued so far;
//! when the backend flush succeeds, every ticket up to that mark is covered. A waiter whose
//! ticket is already covered when it gets the mutex returns at once without a syscall. N
//! concurrent FLUSHes cost at most two backend flushes instead of N.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct FlushBarrier {
    /// Tickets issued (each FLUSH takes the next).
    issued: AtomicU64,
    /// Every ticket ≤ this is covered by a successful backend flush.
    covered: AtomicU64,
    /// One backend flush at a time; tokio's mutex is FIFO, so waiters are served in order.
    running: Mutex<()>,
    /// Backend flushes actually run (for tests and metrics).
    runs: AtomicU64,
}

impl FlushBarrier {
    /// Flushes with `backend_flush`, sharing it with concurrent callers (see module docs).
    pub async fn flush<F, Fut>(&self, backend_flush: F) -> io::Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = io::Result<()>>,
    {
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let _turn = self.running.lock().await;
        if self.covered.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        // Everyone who arrived before this point is covered by the flush we start now.
        let mark = self.issued.load(Ordering::SeqCst);
        self.runs.fetch_add(1, Ordering::Relaxed);
        backend_flush().await?;
        self.covered.fetch_max(mark, Ordering::SeqCst);
        Ok(())
    }

    /// How many backend flushes ran.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    /// A flush that arrives while a backend flush runs must not return before a later backend
    /// flush has started and finished.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flush_arriving_during_a_running_flush_waits_for_the_next_one() {
        let b = Arc::new(FlushBarrier::default());
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let b = b.clone();
            tokio::spawn(async move {
                b.flush(|| async move {
                    started_tx.send(()).unwrap();
                    release_rx.await.unwrap();
                    Ok(())
                })
                .await
            })
        };
        started_rx.await.unwrap();
        // The second flush arrives while the first backend flush is running.
        let second_ran = Arc::new(AtomicBool::new(false));
        let second = {
            let b = b.clone();
            let ran = second_ran.clone();
            tokio::spawn(async move {
                b.flush(|| async move {
                    ran.store(true, Ordering::SeqCst);
                    Ok(())
                })
                .await
            })
        };
        tokio::task::yield_now().await;
        release_tx.send(()).unwrap();
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        assert!(
            second_ran.load(Ordering::SeqCst),
            "the second FLUSH needs its own backend flush"
        );
        assert_eq!(b.runs(), 2);
    }

    /// Flushes that all arrive before a backend flush starts share it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_flushes_share_backend_flushes() {
        let b = Arc::new(FlushBarrier::default());
        let hold = b.running.lock().await; // nobody can start yet
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let b = b.clone();
            tasks.push(tokio::spawn(
                async move { b.flush(|| async { Ok(()) }).await },
            ));
        }
        // Wait until all ten hold tickets.
        while b.issued.load(Ordering::SeqCst) < 10 {
            tokio::task::yield_now().await;
        }
        drop(hold);
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(
            b.runs(),
            1,
            "ten FLUSHes waiting together need one backend flush"
        );
    }

    /// A failed backend flush covers nobody: the next waiter runs its own.
    #[tokio::test]
    async fn failed_flush_is_not_shared() {
        let b = FlushBarrier::default();
        let r = b
            .flush(|| async { Err(io::Error::other("disk on fire")) })
            .await;
        assert!(r.is_err());
        b.flush(|| async { Ok(()) }).await.unwrap();
        assert_eq!(b.runs(), 2);
    }
}
