//! The meta-data writes of one volume, in order. The loop queues jobs; one runs at a time on a
//! blocking thread, so records land in the order they were produced. Jobs queued while another
//! runs are merged and share one flush (group commit of activity-log transactions).
//!
//! The queue holds at most one group of sync points (the output queue waits for it), one
//! bitmap write-back of the tick and the final job of a detach.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::event::{Disk, Event};
use crate::md;

/// What a job made durable, reported back to the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// A group of sync points of the replication machine (the output queue waits for it).
    Group(u64),
    /// Activity-log transactions up to this sequence (and how many).
    Al(u64, u64),
    /// A superblock of this sequence.
    Superblock(u64),
    /// Bitmap pages (write-back).
    Pages,
}

/// One job: bitmap pages, then records (activity-log transactions, superblocks).
///
/// Pages are written and flushed before any record: a transaction that drops an extent from
/// the log, or a superblock that says the node is no longer Primary, must never be durable
/// while the bitmap bits they stop covering are not. Records are written in order and flushed
/// at the end. Jobs run one at a time, so a page written by an earlier job (the tick's
/// write-back) is durable before any later job's record.
#[derive(Debug, Default)]
pub struct Job {
    /// Bitmap pages (offset, 4 KiB record).
    pub pages: Vec<(u64, Vec<u8>)>,
    /// Records (offset, 4 KiB record), in order.
    pub records: Vec<(u64, Vec<u8>)>,
    /// What completes with it.
    pub done: Vec<Done>,
}

/// The per-volume queue.
#[derive(Debug)]
pub struct MetaQueue {
    queue: VecDeque<Job>,
    busy: bool,
    file: Arc<File>,
    md_flushes: bool,
}

impl MetaQueue {
    /// A queue writing to `file`; `md_flushes` false skips the flushes (`md-flushes no`).
    pub fn new(file: Arc<File>, md_flushes: bool) -> Self {
        MetaQueue {
            queue: VecDeque::new(),
            busy: false,
            file,
            md_flushes,
        }
    }

    /// Queues a job.
    pub fn push(&mut self, job: Job) {
        self.queue.push_back(job);
    }

    /// Whether nothing is queued or running.
    pub fn idle(&self) -> bool {
        !self.busy && self.queue.is_empty()
    }

    /// Whether a job is running.
    pub fn busy(&self) -> bool {
        self.busy
    }

    /// Starts the queued jobs (merged) unless one is running.
    pub fn kick(&mut self, resource: &Arc<str>, events: &mpsc::Sender<Event>) {
        if self.busy || self.queue.is_empty() {
            return;
        }
        // Merging keeps every job's rule: all pages (of all jobs) are durable before any record.
        let mut merged = Job::default();
        for j in self.queue.drain(..) {
            merged.pages.extend(j.pages);
            merged.records.extend(j.records);
            merged.done.extend(j.done);
        }
        self.busy = true;
        let file = self.file.clone();
        let flush = self.md_flushes;
        let (resource, events) = (resource.clone(), events.clone());
        tokio::spawn(async move {
            let (pages, records) = (merged.pages, merged.records);
            let result = tokio::task::spawn_blocking(move || {
                for (off, b) in &pages {
                    md::write_block(&file, *off, b)?;
                }
                // Pages are durable when the job completes, even without records: a page leaves
                // the loop's dirty set when its job is queued, and a later transaction that
                // drops its extent from the log relies on it being on disk by then.
                if !pages.is_empty() && flush {
                    file.sync_data()?;
                }
                for (off, b) in &records {
                    md::write_block(&file, *off, b)?;
                }
                if !records.is_empty() && flush {
                    file.sync_data()?;
                }
                Ok(())
            })
            .await
            .unwrap_or_else(|e| {
                Err(std::io::Error::other(format!(
                    "meta-data writer failed: {e}"
                )))
            });
            let _ = events
                .send(Event::Disk(Disk::MetaDone {
                    resource,
                    done: merged.done,
                    result,
                }))
                .await;
        });
    }

    /// The running job finished.
    pub fn completed(&mut self) {
        assert!(
            self.busy,
            "completion of a meta-data job that was not running"
        );
        self.busy = false;
    }
}
