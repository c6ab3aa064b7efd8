//! `replicatorctl create-md`: writes fresh meta-data for this node's volume of a resource.
//!
//! Refuses to overwrite valid meta-data without `--force` (drbdadm asks the same question),
//! and refuses, without `--force`, internal meta-data over a data area that holds a filesystem
//! (the meta-data would overwrite its end); with external meta-data it only warns.
//!
//! Write order (see `replicator_core::meta`): both superblock slots zeroed and flushed, then
//! the bitmap pages and the activity log, flushed, then the first superblock, flushed. A crash
//! at any point leaves either no meta-data or complete meta-data.

use replicator_core::config::{Host, Resource};
use replicator_core::meta::layout::al_slots_for;
use replicator_core::meta::superblock::{Flags, NO_PEER};
use replicator_core::meta::{ActivityLog, BLOCK_LEN, Layout, Placement, Superblock, bmpage, probe};
use replicator_core::types::{GenerationIds, NodeId};

use crate::exit::{Exit, Failure};
use crate::md;

/// What create-md did.
#[derive(Debug)]
pub struct Created {
    /// The new layout.
    pub layout: Layout,
    /// The new superblock.
    pub sb: Superblock,
    /// Warnings for the operator.
    pub warnings: Vec<String>,
}

/// Writes new meta-data for `host`'s volume of `res`.
pub fn create_md(res: &Resource, host: &Host, force: bool) -> Result<Created, Failure> {
    let disks = md::open(host)?;
    let meta = disks.meta_path.display().to_string();
    let mut warnings = Vec::new();
    let al_slots = al_slots_for(host.disk_options.al_extents);
    let layout = Layout::compute(
        disks.placement,
        disks.backing_bytes,
        disks.meta_dev_bytes,
        al_slots,
        host.disk_options.size_bytes,
    )
    .map_err(|e| {
        Failure::new(
            Exit::Refused,
            format!("{}: {e}", disks.backing_path.display()),
        )
    })?;
    // Existing meta-data?
    if let Ok(found) = disks.superblock() {
        let sb = found.sb;
        let what = format!(
            "{meta} already holds valid meta-data (node id {}, {} bytes of data, current UUID {})",
            sb.node_id.0, sb.data_bytes, sb.gi.current
        );
        if !force {
            return Err(Failure::new(
                Exit::Refused,
                format!("{what}; refusing to overwrite it without --force"),
            ));
        }
        warnings.push(format!("{what}; overwriting it (--force)"));
    }
    // Something in the data area?
    let head = disks.data_head(probe::PROBE_BYTES).map_err(|e| {
        Failure::new(
            Exit::Failed,
            format!("reading {}: {e}", disks.backing_path.display()),
        )
    })?;
    if let Some(fs) = probe::detect(&head) {
        let what = format!(
            "the data area of {} seems to hold a {fs}",
            disks.backing_path.display()
        );
        if disks.placement == Placement::Internal {
            let msg = format!(
                "{what}; internal meta-data would overwrite its last {} KiB",
                layout.meta_bytes / 1024
            );
            if !force {
                return Err(Failure::new(
                    Exit::Refused,
                    format!("{msg}: shrink it first or use external meta-data; --force overwrites"),
                ));
            }
            warnings.push(format!("{msg} (--force)"));
        } else {
            warnings.push(format!(
                "{what}; it is kept (external meta-data) and becomes the device's content"
            ));
        }
    }
    let f = &disks.meta;
    let io =
        |what: &str, e: std::io::Error| Failure::new(Exit::Failed, format!("{what} {meta}: {e}"));
    // 1. No valid superblock from here on until the new one is complete.
    let zero = vec![0u8; BLOCK_LEN];
    for off in layout.sb_offsets {
        md::write_block(f, off, &zero).map_err(|e| io("invalidating the old superblocks of", e))?;
    }
    f.sync_data().map_err(|e| io("flushing", e))?;
    // 2. Bitmap (all clear) and activity log.
    let md_uuid = md::random_u64();
    let bm = replicator_core::bitmap::Bitmap::new(layout.data_bytes);
    for p in 0..layout.bm_pages {
        md::write_block(
            f,
            layout.bm_page_offset(p),
            &bmpage::encode(&bm, p, md_uuid),
        )
        .map_err(|e| io("writing the bitmap of", e))?;
    }
    let al_extents = host
        .disk_options
        .al_extents
        .min(replicator_core::meta::layout::max_al_extents(al_slots));
    let mut al = ActivityLog::new(al_extents, al_slots, md_uuid, 1);
    let txs = al.full_context();
    for i in 0..al_slots {
        let block = match txs.iter().find(|t| t.ring_slot(al_slots) == i) {
            Some(t) => t.encode().to_vec(),
            None => zero.clone(),
        };
        md::write_block(f, layout.al_slot_offset(i), &block)
            .map_err(|e| io("writing the activity log of", e))?;
    }
    f.sync_data().map_err(|e| io("flushing", e))?;
    // 3. The superblock: a fresh, Inconsistent volume of this node.
    let peers: Vec<NodeId> = res
        .connections_of(host.name())
        .filter_map(|c| c.ends(host.name()).map(|(_, p)| p.node_id))
        .collect();
    let sb = Superblock {
        flags: Flags(0),
        seq: 1,
        md_uuid,
        node_id: host.node_id,
        placement: disks.placement,
        data_bytes: layout.data_bytes,
        max_data_bytes: layout.max_data_bytes,
        gi: GenerationIds::just_created(),
        al_slots,
        al_extents,
        bm_pages: layout.bm_pages,
        peer_node_id: if peers.len() == 1 {
            Some(peers[0])
        } else {
            None
        },
        al_offset: layout.al_offset,
        bm_offset: layout.bm_offset,
    };
    debug_assert!(sb.peer_node_id.is_none_or(|p| p.0 != NO_PEER));
    md::write_superblock(f, &layout, &sb, true).map_err(|e| io("writing the superblock of", e))?;
    Ok(Created {
        layout,
        sb,
        warnings,
    })
}
