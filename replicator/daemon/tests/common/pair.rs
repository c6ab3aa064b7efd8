//! Two replicatord nodes of one resource `r0`, each daemon in its own network namespace on a
//! testkit [`Lan`] (so the `.res` addresses are real and the link can be cut with
//! [`Lan::set_link`]); images and NBD sockets in a tmpfs work directory. Everything is removed
//! on drop (daemons with their process groups, namespaces, files).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tandem_testkit::netns::Lan;
use tandem_testkit::wait;

use super::{Node, Out, run};

/// How long a wait for a state may take (a full sync of the test device in a debug build on a
/// loaded machine included).
pub const STATE_TIMEOUT: Duration = Duration::from_secs(90);

/// A two-node resource.
pub struct Pair {
    /// The nodes n1 (node id 0) and n2 (node id 1). Dropped before the LAN.
    pub n: [Node; 2],
    /// The LAN their namespaces are on.
    pub lan: Lan,
    /// Size of each backing file.
    pub file_bytes: u64,
}

/// The configuration of `r0` on a LAN, with `protocol`, extra `net { }` options.
pub fn config(lan: &Lan, protocol: &str, net: &str) -> String {
    let (a, b) = (&lan.hosts[0].addr, &lan.hosts[1].addr);
    format!(
        "resource r0 {{
  protocol {protocol};
  meta-disk internal;
  net {{ ping-int 1; ping-timeout 5; connect-int 1; timeout 20; verify-alg crc32c; {net} }}
  disk {{ c-plan-ahead 0; resync-rate 2G; c-min-rate 0; }}
  handlers {{ split-brain \"echo $DRBD_RESOURCE peer=$DRBD_PEERS peer-id=$DRBD_PEER_NODE_ID >> @DIR@/split-brain.$DRBD_LOCAL_HOST\"; }}
  on n1 {{ device nbd+unix:///r0?socket=@DIR@/n1.nbd; disk @DIR@/n1.img; address {a}:7789; }}
  on n2 {{ device nbd+unix:///r0?socket=@DIR@/n2.nbd; disk @DIR@/n2.img; address {b}:7789; }}
}}
"
    )
}

impl Pair {
    /// A LAN, both nodes' configuration (`protocol`, extra `net` options) and fresh meta-data
    /// on two sparse backing files of `file_bytes`. Daemons are not started.
    pub fn new(protocol: &str, net: &str, file_bytes: u64) -> Pair {
        tandem_testkit::require_root();
        let lan = Lan::new(2);
        let text = config(&lan, protocol, net);
        let mut n1 = Node::new_in("/dev/shm", "n1", &text);
        n1.netns = Some(lan.hosts[0].ns.clone());
        let mut n2 = Node::sibling(&n1, "n2");
        n2.netns = Some(lan.hosts[1].ns.clone());
        n1.file("n1.img", file_bytes);
        n1.file("n2.img", file_bytes);
        n1.ctl(&["create-md", "r0"]).ok();
        n2.ctl(&["create-md", "r0"]).ok();
        Pair {
            n: [n1, n2],
            lan,
            file_bytes,
        }
    }

    /// Starts both daemons and brings `r0` up on both.
    pub fn up(&mut self) {
        for n in &mut self.n {
            n.start();
        }
        for n in &self.n {
            n.ctl(&["up", "r0"]).ok();
        }
    }

    /// `replicatorctl ARGS` on node `i`.
    pub fn ctl(&self, i: usize, args: &[&str]) -> Out {
        self.n[i].ctl(args)
    }

    /// `status --json r0` of node `i`.
    pub fn status(&self, i: usize) -> Value {
        self.n[i].status("r0")
    }

    /// Waits until node `i`'s status satisfies `pred`.
    #[track_caller]
    pub fn wait(&self, i: usize, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait::until_some(what, STATE_TIMEOUT, || {
                let s = self.status(i);
                let ok = pred(&s);
                last = s.clone();
                ok.then_some(s)
            })
        }));
        match found {
            Ok(s) => s,
            Err(e) => {
                eprintln!("last status of n{}: {last:#}", i + 1);
                std::panic::resume_unwind(e)
            }
        }
    }

    /// Waits until both nodes are Connected with UpToDate disks.
    #[track_caller]
    pub fn wait_in_sync(&self) {
        for i in 0..2 {
            self.wait(i, "Connected, UpToDate/UpToDate", |s| {
                s["connection_state"] == "Connected"
                    && s["disk_state"] == "UpToDate"
                    && s["peers"][0]["disk_state"] == "UpToDate"
                    && s["out_of_sync_bytes"] == 0
            });
        }
    }

    /// The export URI of node `i`.
    pub fn uri(&self, i: usize) -> String {
        self.n[i].uri("r0")
    }

    /// Backing file of node `i`.
    pub fn image(&self, i: usize) -> PathBuf {
        self.n[0].path(&format!("n{}.img", i + 1))
    }

    /// Whether the data areas (the exported bytes) of both backing files are equal.
    pub fn data_equal(&self) -> bool {
        let size = self.status(0)["size_bytes"].as_u64().expect("size");
        let read = |i: usize| {
            let mut b = std::fs::read(self.image(i)).expect("read image");
            b.truncate(usize::try_from(size).unwrap());
            b
        };
        read(0) == read(1)
    }

    /// A counter from node `i`'s status.
    pub fn counter(&self, i: usize, name: &str) -> u64 {
        self.status(i)["counters"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("counter {name}"))
    }

    /// Runs `fio` against node `i`'s export with `args` (after the common ones); returns its
    /// output.
    pub fn fio(&self, i: usize, args: &[&str]) -> Out {
        let uri = format!("--uri={}", self.uri(i));
        let mut all = vec![
            "--ioengine=nbd",
            uri.as_str(),
            "--verify_state_save=0",
            "--output-format=terse",
        ];
        all.extend_from_slice(args);
        run("fio", &all, &[])
    }
}
