//! Recognising what already lives in a data area before `create-md` writes meta-data: a
//! filesystem or partition table there means the operator may be about to damage data
//! (internal meta-data takes the end of the device) — drbdadm warns in the same case.

/// Bytes of the data area's start that [`detect`] needs.
pub const PROBE_BYTES: usize = 68 * 1024;

/// Signatures: (what, offset, magic).
const SIGNATURES: &[(&str, usize, &[u8])] = &[
    ("ext2/ext3/ext4 filesystem", 1080, &[0x53, 0xEF]),
    ("XFS filesystem", 0, b"XFSB"),
    ("Btrfs filesystem", 65_600, b"_BHRfS_M"),
    ("LUKS encrypted volume", 0, b"LUKS\xba\xbe"),
    ("LVM physical volume", 536, b"LVM2 001"),
    ("swap space", 4086, b"SWAPSPACE2"),
    ("GPT partition table", 512, b"EFI PART"),
    ("DOS partition table / boot sector", 510, &[0x55, 0xAA]),
];

/// What the first bytes of a data area hold, if they hold something recognisable.
/// `head` is at most [`PROBE_BYTES`] bytes from offset 0 (shorter when the area is smaller).
pub fn detect(head: &[u8]) -> Option<&'static str> {
    SIGNATURES
        .iter()
        .find(|(_, off, magic)| head.get(*off..*off + magic.len()) == Some(*magic))
        .map(|(what, _, _)| *what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_signatures_and_nothing_in_zeros() {
        let mut head = vec![0u8; PROBE_BYTES];
        assert_eq!(detect(&head), None);
        head[1080] = 0x53;
        head[1081] = 0xEF;
        assert_eq!(detect(&head), Some("ext2/ext3/ext4 filesystem"));
        let mut x = vec![0u8; 100];
        x[..4].copy_from_slice(b"XFSB");
        assert_eq!(detect(&x), Some("XFS filesystem"));
        assert_eq!(detect(&[]), None);
    }
}
