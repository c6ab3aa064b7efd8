//! The file backend on real block devices (loop devices, one over an NBD export through
//! nbdfuse with nbdkit's error filter injecting write-back failures). Needs root.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tandem_nbd::{Backend, Bytes, FileBackend, FileOptions, ZeroFlags};
use tandem_testkit::{proc::Daemon, require_root, run, run_status, wait};

/// A loop device over `file`, detached on drop.
struct Loop(String);

impl Loop {
    fn new(file: &Path) -> Self {
        Loop(
            run("losetup", &["-f", "--show", &file.to_string_lossy()])
                .trim()
                .to_owned(),
        )
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = run_status("losetup", &["-d", &self.0]);
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Regression: a block device takes `fallocate` only in whole logical blocks, and the export
/// advertises a minimum block size of 1. An unaligned TRIM came back as NBD_EIO, an unaligned
/// WRITE_ZEROES as well (and with NO_HOLE switched ZERO_RANGE off for good, so that later
/// fast zeroes failed with NBD_ENOTSUP).
#[test]
fn unaligned_trim_and_zeroes_on_a_block_device() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::write(&img, vec![0xab_u8; 1 << 20]).unwrap();
    let lo = Loop::new(&img);
    let b = FileBackend::open(Path::new(&lo.0), FileOptions::default()).unwrap();
    let rt = rt();
    let read = |off: u64, len: u32| rt.block_on(b.read(off, len)).unwrap();
    // TRIM is a hint: it succeeds and leaves everything outside its range alone.
    rt.block_on(b.trim(1, 10_000, false))
        .expect("unaligned TRIM on a block device");
    assert_eq!(read(0, 1), [0xab]);
    assert!(read(10_001, 5000).iter().all(|&x| x == 0xab));
    for no_hole in [false, true] {
        let flags = ZeroFlags {
            no_hole,
            ..ZeroFlags::default()
        };
        let at = if no_hole { 300_000 } else { 200_000 };
        rt.block_on(b.write_zeroes(at + 100, 9000, flags))
            .unwrap_or_else(|e| panic!("unaligned WRITE_ZEROES (no_hole {no_hole}): {e}"));
        let got = read(at, 9200);
        assert!(
            got[..100].iter().all(|&x| x == 0xab),
            "head before the range"
        );
        assert!(
            got[100..9100].iter().all(|&x| x == 0),
            "the range reads as zeroes"
        );
        assert!(
            got[9100..].iter().all(|&x| x == 0xab),
            "tail after the range"
        );
        // Smaller than one block: zero bytes only.
        rt.block_on(b.write_zeroes(at + 20_000, 7, flags)).unwrap();
        assert_eq!(read(at + 19_999, 9), [0xab, 0, 0, 0, 0, 0, 0, 0, 0xab]);
    }
    // Fast zeroing still works after all that.
    let fast = ZeroFlags {
        fast: true,
        no_hole: true,
        ..ZeroFlags::default()
    };
    rt.block_on(b.write_zeroes(4096, 65536, fast))
        .expect("aligned fast zero");
    assert!(read(4096, 65536).iter().all(|&x| x == 0));
    drop(b);
}

/// Regression ("fsyncgate"): when write-back fails, fdatasync reports it once and the pages
/// are marked clean; the next fdatasync succeeds although the acknowledged write never reached
/// the disk. A FLUSH after a failed one must fail too.
#[test]
fn a_failed_flush_fails_every_later_flush() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nbdkit.sock");
    let trigger = dir.path().join("fail-writes");
    let mut cmd = Command::new("nbdkit");
    cmd.args(["--foreground", "--exit-with-parent", "-U"])
        .arg(&sock)
        .args(["--filter=error", "memory", "16M"])
        .args(["error-pwrite=EIO", "error-pwrite-rate=100%"])
        .arg(format!("error-pwrite-file={}", trigger.display()));
    let _nbdkit = Daemon::spawn("nbdkit", cmd, &dir.path().join("nbdkit.log"));
    wait::until("nbdkit's socket", Duration::from_secs(20), || sock.exists());
    let uri = format!("nbd+unix:///?socket={}", sock.display());
    let dev = tandem_testkit::blockdev::NbdLoop::attach(&uri, dir.path(), 1);
    let b = FileBackend::open(Path::new(&dev.loopdev), FileOptions::default()).unwrap();
    let rt = rt();
    rt.block_on(b.write(0, Bytes::from(vec![0x5a; 4096]), false))
        .expect("buffered write");
    rt.block_on(b.flush())
        .expect("a flush while the disk works");
    rt.block_on(b.write(8192, Bytes::from(vec![0x5b; 4096]), false))
        .expect("buffered write, acknowledged before the disk fails");
    std::fs::write(&trigger, b"").unwrap();
    let first = rt.block_on(b.flush());
    assert!(
        first.is_err(),
        "write-back to a failing disk must fail the flush"
    );
    std::fs::remove_file(&trigger).unwrap();
    // The disk works again, but the write acknowledged before the failure is gone.
    let later = rt.block_on(b.flush());
    let e = later.expect_err("a flush after a failed flush must fail");
    assert!(e.to_string().contains("an earlier flush failed"), "{e}");
    drop(b);
}
