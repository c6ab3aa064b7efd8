//! Attaching a volume (`up`): open its files, read and check its meta-data against the
//! configuration, recover the activity log after a crash, and reset the log — the blocking part
//! of bringing a resource up, run on a blocking thread by the daemon.

use std::fs::File;

use replicator_core::bitmap::Bitmap;
use replicator_core::config::{Host, Resource};
use replicator_core::meta::al::{self, AlTransaction};
use replicator_core::meta::superblock::Flags;
use replicator_core::meta::{AL_EXTENT_BYTES, META_BLOCK};
use replicator_core::meta::{
    ActivityLog, AlRecovery, Layout, MetaError, Superblock, bmpage, layout,
};

use crate::exit::{Exit, Failure};
use crate::md::{self, Disks};

/// An attached volume: its meta-data read, checked and recovered.
#[derive(Debug)]
pub struct Attached {
    /// The files.
    pub disks: Disks,
    /// Where everything is.
    pub layout: Layout,
    /// The superblock in force (already rewritten by the attach).
    pub sb: Superblock,
    /// The bitmap.
    pub bitmap: Bitmap,
    /// The activity log, reset and durable.
    pub al: ActivityLog,
    /// Whether the node crashed while Primary (its AL extents were marked out of sync).
    pub crashed_primary: bool,
    /// Things the operator should know (logged by the daemon).
    pub notes: Vec<String>,
}

fn io_fail(what: &str, e: std::io::Error) -> Failure {
    Failure::new(Exit::Failed, format!("{what}: {e}"))
}

/// Attaches `host`'s volume of `res`: reads and checks the meta-data, applies the activity log
/// of a crashed Primary to the bitmap, resets the log and writes a new superblock. Leaves the
/// meta-data untouched when it refuses.
pub fn attach(res: &Resource, host: &Host) -> Result<Attached, Failure> {
    let disks = md::open(host)?;
    let chosen = disks.superblock()?;
    let mut notes = Vec::new();
    if let Some(e) = chosen
        .other
        .as_ref()
        .filter(|e| !matches!(e, MetaError::BadMagic { .. }))
    {
        notes.push(format!("superblock slot {} is not valid ({e}); using slot {} (a torn write of the last update)", 1 - chosen.slot, chosen.slot));
    }
    let mut sb = chosen.sb;
    let meta_path = disks.meta_path.display().to_string();
    let mismatch = |what: String| {
        Failure::new(
            Exit::MetaData,
            format!(
                "{meta_path}: {what}; if the configuration is right, re-create the meta-data (replicatorctl create-md --force {})",
                res.name
            ),
        )
    };
    if sb.placement != disks.placement {
        return Err(mismatch(format!(
            "meta-data was created as {:?}, the configuration says {:?}",
            sb.placement, disks.placement
        )));
    }
    if sb.node_id != host.node_id {
        return Err(mismatch(format!(
            "meta-data belongs to node id {}, the configuration gives this node id {}",
            sb.node_id.0, host.node_id.0
        )));
    }
    let layout = Layout::compute(
        disks.placement,
        disks.backing_bytes,
        disks.meta_dev_bytes,
        sb.al_slots,
        host.disk_options.size_bytes,
    )
    .map_err(|e| Failure::new(Exit::MetaData, format!("{meta_path}: {e}")))?;
    if layout.al_offset != sb.al_offset || layout.bm_offset != sb.bm_offset {
        return Err(mismatch(format!(
            "meta-data places the activity log at {} and the bitmap at {}, but for this file they belong at {} and {} — did the file's size change?",
            sb.al_offset, sb.bm_offset, layout.al_offset, layout.bm_offset
        )));
    }
    if layout.data_bytes != sb.data_bytes || layout.bm_pages != sb.bm_pages {
        return Err(mismatch(format!(
            "meta-data describes {} bytes of data ({} bitmap pages) but the backing file now gives {} ({} pages) — did the file or the 'size' option change?",
            sb.data_bytes, sb.bm_pages, layout.data_bytes, layout.bm_pages
        )));
    }
    let f: &File = &disks.meta;
    // The bitmap: a page that fails its checks comes back all-set.
    let blocks = layout.data_bytes / META_BLOCK;
    let mut pages = Vec::with_capacity(layout.bm_pages_used() as usize);
    let mut bad_pages = Vec::new();
    for p in 0..layout.bm_pages_used() {
        let b = md::read_block(f, layout.bm_page_offset(p))
            .map_err(|e| io_fail(&format!("reading bitmap page {p} of {meta_path}"), e))?;
        match bmpage::decode(&b, p, sb.md_uuid, blocks) {
            Ok(w) => pages.push(Some(w)),
            Err(e) => {
                notes.push(format!(
                    "bitmap page {p} is damaged ({e}); its blocks are marked out of sync"
                ));
                bad_pages.push(p);
                pages.push(None);
            }
        }
    }
    let mut bitmap = bmpage::assemble(pages, blocks);
    // The activity log ring.
    let mut slots = Vec::with_capacity(layout.al_slots as usize);
    for i in 0..layout.al_slots {
        let b = md::read_block(f, layout.al_slot_offset(i))
            .map_err(|e| io_fail(&format!("reading activity-log slot {i} of {meta_path}"), e))?;
        slots.push(AlTransaction::decode(&b, sb.md_uuid));
    }
    let rec: AlRecovery = al::recover(&slots);
    let crashed_primary = sb.flags.has(Flags::PRIMARY_IND);
    let mut dirty_pages: Vec<u32> = bad_pages;
    if crashed_primary && !res.is_standalone() {
        if rec.complete && host.disk_options.al_updates {
            for e in &rec.extents {
                let start = u64::from(*e) * AL_EXTENT_BYTES;
                let len = AL_EXTENT_BYTES.min(layout.data_bytes.saturating_sub(start));
                if len > 0 {
                    bitmap.set_range(start, len);
                    dirty_pages.extend(pages_of(start, len));
                }
            }
            notes.push(format!(
                "the node crashed while Primary: {} activity-log extents marked out of sync",
                rec.extents.len()
            ));
        } else {
            bitmap.set_all();
            dirty_pages.extend(0..layout.bm_pages_used());
            notes.push("the node crashed while Primary and the activity log cannot be used: the whole device is marked out of sync".to_owned());
        }
    } else if crashed_primary {
        notes.push(
            "the node crashed while Primary (standalone resource: nothing to resync)".to_owned(),
        );
    }
    dirty_pages.sort_unstable();
    dirty_pages.dedup();
    for p in &dirty_pages {
        md::write_block(
            f,
            layout.bm_page_offset(*p),
            &bmpage::encode(&bitmap, *p, sb.md_uuid),
        )
        .map_err(|e| io_fail("writing the bitmap", e))?;
    }
    if !dirty_pages.is_empty() {
        f.sync_data()
            .map_err(|e| io_fail("flushing the bitmap", e))?;
    }
    // A fresh, durable activity log with the configured size (clamped to the ring).
    let max = layout::max_al_extents(layout.al_slots);
    let mut al_extents = host.disk_options.al_extents;
    if al_extents > max {
        notes.push(format!("al-extents {al_extents} exceeds what this meta-data's activity log holds ({max}); using {max} (re-create the meta-data to enlarge it)"));
        al_extents = max;
    }
    let mut al = ActivityLog::new(al_extents, layout.al_slots, sb.md_uuid, rec.last_seq + 1);
    for t in al.full_context() {
        md::write_block(
            f,
            layout.al_slot_offset(t.ring_slot(layout.al_slots)),
            &t.encode(),
        )
        .map_err(|e| io_fail("writing the activity log", e))?;
        al.committed(t.seq);
    }
    f.sync_data()
        .map_err(|e| io_fail("flushing the activity log", e))?;
    // The new superblock: no longer Primary; remember the crash until the peer resynced.
    let mut flags = sb.flags.with(Flags::PRIMARY_IND, false);
    if crashed_primary && !res.is_standalone() {
        flags = flags.with(Flags::CRASHED_PRIMARY, true);
    }
    sb.flags = flags;
    sb.al_extents = al_extents;
    sb.seq += 1;
    md::write_superblock(f, &layout, &sb, true)
        .map_err(|e| io_fail("writing the superblock", e))?;
    Ok(Attached {
        disks,
        layout,
        sb,
        bitmap,
        al,
        crashed_primary,
        notes,
    })
}

/// Bitmap pages covering the byte range.
pub fn pages_of(offset: u64, len: u64) -> std::ops::RangeInclusive<u32> {
    let first = bmpage::page_of_block(offset / META_BLOCK);
    let last = bmpage::page_of_block((offset + len.max(1) - 1) / META_BLOCK);
    first..=last
}
