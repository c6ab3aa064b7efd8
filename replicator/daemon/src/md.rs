//! Blocking access to a volume's backing file and meta-data: opening them as the configuration
//! says, and reading and writing the 4 KiB meta-data records `replicator_core::meta` encodes.
//! Used by `replicatorctl` (create-md, show-gi) and, on blocking threads, by the daemon.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use replicator_core::config::{Disk, Host, MetaDisk};
use replicator_core::meta::superblock::{self, Chosen};
use replicator_core::meta::{BLOCK_LEN, Layout, MetaError, Placement, Superblock};

use crate::exit::{Exit, Failure};

/// The files of one volume, opened.
#[derive(Debug)]
pub struct Disks {
    /// The backing file or device.
    pub backing_path: PathBuf,
    /// Its size in bytes.
    pub backing_bytes: u64,
    /// The file holding the meta-data (the backing file for internal meta-data).
    pub meta_path: PathBuf,
    /// The meta-data file handle.
    pub meta: File,
    /// The meta-data file's size.
    pub meta_dev_bytes: u64,
    /// Where the meta-data is.
    pub placement: Placement,
}

/// The placement a `meta-disk` statement asks for.
pub fn placement_of(m: &MetaDisk) -> Placement {
    match m {
        MetaDisk::Internal => Placement::Internal,
        MetaDisk::External { index, .. } => Placement::External { index: *index },
    }
}

fn size_of(f: &File) -> io::Result<u64> {
    // SEEK_END works for block devices too, where metadata().len() is 0.
    let mut f = f;
    f.seek(SeekFrom::End(0))
}

fn open_rw(path: &Path, what: &str) -> Result<File, Failure> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| {
            Failure::new(
                Exit::Failed,
                format!("cannot open {what} {}: {e}", path.display()),
            )
        })
}

/// Opens the backing file and the meta-data file of `host`'s volume.
pub fn open(host: &Host) -> Result<Disks, Failure> {
    let Disk::Path(backing) = &host.disk else {
        return Err(Failure::new(
            Exit::Config,
            format!(
                "'on {}' has 'disk none': replicatord needs a backing file on this node",
                host.name()
            ),
        ));
    };
    let backing_path = PathBuf::from(backing);
    let data = open_rw(&backing_path, "backing file")?;
    let backing_bytes = size_of(&data).map_err(|e| {
        Failure::new(
            Exit::Failed,
            format!("cannot size {}: {e}", backing_path.display()),
        )
    })?;
    let (meta_path, meta) = match &host.meta_disk {
        MetaDisk::Internal => (backing_path.clone(), data),
        MetaDisk::External { path, .. } => {
            let p = PathBuf::from(path);
            let f = open_rw(&p, "meta-data file")?;
            (p, f)
        }
    };
    let meta_dev_bytes = size_of(&meta).map_err(|e| {
        Failure::new(
            Exit::Failed,
            format!("cannot size {}: {e}", meta_path.display()),
        )
    })?;
    Ok(Disks {
        backing_path,
        backing_bytes,
        meta_path,
        meta,
        meta_dev_bytes,
        placement: placement_of(&host.meta_disk),
    })
}

/// Reads 4 KiB at `off`; a block past the end of the file reads as zeros (not meta-data).
pub fn read_block(f: &File, off: u64) -> io::Result<Vec<u8>> {
    let mut b = vec![0u8; BLOCK_LEN];
    let mut done = 0;
    while done < b.len() {
        let n = f.read_at(&mut b[done..], off + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(b)
}

/// Writes one 4 KiB record at `off`.
pub fn write_block(f: &File, off: u64, b: &[u8]) -> io::Result<()> {
    assert_eq!(b.len(), BLOCK_LEN, "meta-data records are 4 KiB");
    f.write_all_at(b, off)
}

impl Disks {
    /// Decodes both superblock slots.
    pub fn read_superblocks(&self) -> Result<[Result<Superblock, MetaError>; 2], Failure> {
        let offs = Layout::superblock_offsets(self.placement, self.backing_bytes);
        let mut out = [
            Err(MetaError::BadMagic { what: "superblock" }),
            Err(MetaError::BadMagic { what: "superblock" }),
        ];
        for (i, off) in offs.iter().enumerate() {
            if off + BLOCK_LEN as u64 > self.meta_dev_bytes {
                continue;
            }
            let b = read_block(&self.meta, *off).map_err(|e| {
                Failure::new(
                    Exit::Failed,
                    format!(
                        "cannot read the superblock of {}: {e}",
                        self.meta_path.display()
                    ),
                )
            })?;
            out[i] = Superblock::decode(&b);
        }
        Ok(out)
    }

    /// The superblock in force, or why there is none.
    pub fn superblock(&self) -> Result<Chosen, Failure> {
        let [a, b] = self.read_superblocks()?;
        superblock::choose(a, b).map_err(|e| {
            let hint = match e {
                MetaError::BadMagic { .. } => {
                    "no meta-data found: create it with 'replicatorctl create-md'".to_owned()
                }
                other => format!("meta-data is damaged ({other})"),
            };
            Failure::new(
                Exit::MetaData,
                format!("{}: {hint}", self.meta_path.display()),
            )
        })
    }

    /// The first bytes of the data area (for [`replicator_core::meta::probe`]).
    pub fn data_head(&self, len: usize) -> io::Result<Vec<u8>> {
        let f = File::open(&self.backing_path)?;
        let mut b = vec![0u8; len.min(usize::try_from(self.backing_bytes).unwrap_or(usize::MAX))];
        f.read_exact_at(&mut b, 0)?;
        Ok(b)
    }
}

/// Writes a superblock to the slot its sequence number selects, then flushes when `flush`.
pub fn write_superblock(f: &File, layout: &Layout, sb: &Superblock, flush: bool) -> io::Result<()> {
    write_block(
        f,
        layout.sb_offsets[Superblock::slot_for_seq(sb.seq)],
        &sb.encode(),
    )?;
    if flush {
        f.sync_data()?;
    }
    Ok(())
}

/// 8 random bytes from the kernel (meta-data identities and generation UUIDs).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let mut f = File::open("/dev/urandom").expect("/dev/urandom is readable");
    std::io::Read::read_exact(&mut f, &mut b).expect("/dev/urandom gives bytes");
    u64::from_le_bytes(b)
}
