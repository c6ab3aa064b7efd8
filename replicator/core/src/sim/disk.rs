//! A simulated disk with a volatile write cache, at 512-byte sector granularity. Each sector
//! holds a *tag* (the id of the write that wrote it; 0 = never written); data on the wire and
//! to the state machine is the tag repeated over the sector, so any mix-up of blocks shows.
//!
//! A completed write sits in the cache (visible to reads) until a flush completes, a random
//! write-back happens, or the node crashes (then it is lost). FUA writes go straight to the
//! durable image. A flush makes durable every sector that was cached when it was issued (with
//! whatever newer value the cache holds by then: a real disk writes back what it has).

// The simulated device is 16 MiB: sector and block numbers always fit in usize.
#![allow(clippy::cast_possible_truncation)]

use bytes::Bytes;
use std::collections::BTreeMap;

/// Bytes per sector.
pub const SECTOR: u64 = 512;

/// The bytes of `tags` (one per sector) written at sector `first`: each sector starts with its
/// tag and its own sector number (so a block written to the wrong place shows), the rest zero.
pub fn encode(first: u64, tags: &[u64]) -> Bytes {
    let mut v = vec![0u8; tags.len() * SECTOR as usize];
    for (i, (t, chunk)) in tags.iter().zip(v.chunks_mut(SECTOR as usize)).enumerate() {
        chunk[0..8].copy_from_slice(&t.to_le_bytes());
        chunk[8..16].copy_from_slice(&(first + i as u64).to_le_bytes());
    }
    Bytes::from(v)
}

/// The tags of `data` found at sector `first`; panics on anything else (a sector that is not
/// whole, or that belongs elsewhere), which would mean the machine mangled data.
pub fn decode(first: u64, data: &[u8]) -> Vec<u64> {
    assert_eq!(
        data.len() as u64 % SECTOR,
        0,
        "data of {} bytes is not whole sectors",
        data.len()
    );
    data.chunks(SECTOR as usize)
        .enumerate()
        .map(|(i, s)| {
            let t = u64::from_le_bytes(s[0..8].try_into().expect("8 bytes"));
            let at = u64::from_le_bytes(s[8..16].try_into().expect("8 bytes"));
            // Sector 0 of a never-written disk reads as zeros everywhere.
            assert!(
                at == first + i as u64 || (t == 0 && at == 0),
                "sector {} carries data of sector {at} (write {t})",
                first + i as u64
            );
            t
        })
        .collect()
}

/// One node's disk.
#[derive(Debug, Clone)]
pub struct Disk {
    durable: Vec<u64>,
    cache: BTreeMap<u64, u64>,
}

impl Disk {
    /// An all-zero disk of `sectors` sectors.
    pub fn new(sectors: u64) -> Disk {
        Disk {
            durable: vec![0; usize::try_from(sectors).expect("size")],
            cache: BTreeMap::new(),
        }
    }

    /// What a read of `sector` returns now.
    pub fn visible(&self, sector: u64) -> u64 {
        self.cache
            .get(&sector)
            .copied()
            .unwrap_or(self.durable[sector as usize])
    }

    /// The visible image.
    pub fn image(&self) -> Vec<u64> {
        (0..self.durable.len() as u64)
            .map(|s| self.visible(s))
            .collect()
    }

    /// The durable image (what survives a crash).
    pub fn durable(&self) -> &[u64] {
        &self.durable
    }

    /// Applies a completed write.
    pub fn write(&mut self, first: u64, tags: &[u64], fua: bool) {
        for (i, t) in tags.iter().enumerate() {
            let s = first + i as u64;
            if fua {
                self.durable[s as usize] = *t;
                self.cache.remove(&s);
            } else {
                self.cache.insert(s, *t);
            }
        }
    }

    /// Reads `n` sectors.
    pub fn read(&self, first: u64, n: u64) -> Vec<u64> {
        (first..first + n).map(|s| self.visible(s)).collect()
    }

    /// The sectors a flush issued now will make durable.
    pub fn flush_set(&self) -> Vec<u64> {
        self.cache.keys().copied().collect()
    }

    /// Completes a flush of `sectors`.
    pub fn flush(&mut self, sectors: &[u64]) {
        for s in sectors {
            if let Some(t) = self.cache.remove(s) {
                self.durable[*s as usize] = t;
            }
        }
    }

    /// Writes back one cached sector chosen by `pick` (a random index), as a disk may at any time.
    pub fn write_back_one(&mut self, pick: u64) {
        if self.cache.is_empty() {
            return;
        }
        let k = *self
            .cache
            .keys()
            .nth((pick % self.cache.len() as u64) as usize)
            .expect("index");
        let t = self.cache.remove(&k).expect("key");
        self.durable[k as usize] = t;
    }

    /// A crash: the cache is lost.
    pub fn crash(&mut self) {
        self.cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_lost_on_crash_unless_flushed_or_fua() {
        let mut d = Disk::new(8);
        d.write(0, &[1, 1], false);
        d.write(2, &[2], true);
        let set = d.flush_set();
        d.write(4, &[3], false);
        d.flush(&set);
        d.crash();
        assert_eq!(d.image(), vec![1, 1, 2, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn tags_round_trip() {
        assert_eq!(
            decode(7, &encode(7, &[5, 0, u64::MAX])),
            vec![5, 0, u64::MAX]
        );
    }
}
