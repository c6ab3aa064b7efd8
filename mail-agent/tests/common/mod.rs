//! Shared fixture of the mail system tests: test hosts in network namespaces (the mail server,
//! a client, an offline DNS server, a remote MX that records what it receives, an old IMAP
//! server), the agent run as a cluster manager would run it, and real clients (swaks,
//! Python's imaplib/poplib, dkimverify). Everything is removed on drop, also on failure.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tandem_testkit::netns::{Host, Lan};
use tandem_testkit::proc::Daemon;
use tandem_testkit::{run, wait};

/// The agent binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_tandem-mail");

/// Test directories live here: root-owned and not writable by others (OpenDKIM refuses keys
/// below a world-writable directory such as /tmp), with paths short enough for sockets.
pub const TEST_ROOT: &str = "/run/tandem-mail-tests";

/// EICAR's test string.
pub const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// SpamAssassin's GTUBE string.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// A directory under [`TEST_ROOT`], removed on drop.
pub fn test_dir(prefix: &str) -> tempfile::TempDir {
    std::fs::create_dir_all(TEST_ROOT).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(TEST_ROOT, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(TEST_ROOT)
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// The resolvers of the host's `/etc/resolv.conf` (glibc's default, 127.0.0.1, when it names
/// none). The testkit enters a namespace with `nsenter --net`, without a mount namespace of its
/// own, so every program the tests run there (Postfix, getent, swaks, dkimverify) reads the
/// host's file; `/etc/netns/NS/resolv.conf` is only bind-mounted by `ip netns exec`. The
/// namespaces that resolve therefore carry these addresses themselves and answer on them (see
/// [`World::start_dns`]): nothing leaves the namespace, whatever the host's resolver is.
pub fn host_nameservers() -> Vec<std::net::IpAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut v: Vec<std::net::IpAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    if v.is_empty() {
        v.push(std::net::Ipv4Addr::LOCALHOST.into());
    }
    v
}

/// The mail resource on one directory, driven through the agent binary inside the server's
/// namespace with the environment a cluster manager gives it. Stopped on drop.
pub struct Agent {
    pub mx: Host,
    pub dir: PathBuf,
    pub config: PathBuf,
    started: bool,
}

impl Agent {
    pub fn new(mx: &Host, dir: &Path) -> Agent {
        Agent {
            mx: mx.clone(),
            dir: dir.to_path_buf(),
            config: dir.join("mail.toml"),
            started: false,
        }
    }

    /// Runs an OCF action; returns the exit code and combined output.
    pub fn ocf(&self, action: &str, depth: u32) -> (i32, String) {
        let out = self
            .mx
            .command(BIN)
            .arg(action)
            .env("OCF_ROOT", "/usr/lib/ocf")
            .env("OCF_RESOURCE_INSTANCE", "mail")
            .env("OCF_RESKEY_directory", &self.dir)
            .env("OCF_RESKEY_config", &self.config)
            .env("OCF_CHECK_LEVEL", depth.to_string())
            .env("OCF_RESKEY_CRM_meta_timeout", "240000")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    pub fn start(&mut self) {
        let (code, out) = self.ocf("start", 0);
        self.started = true;
        if code != 0 {
            panic!("start failed ({code}): {out}\n{}", self.logs());
        }
    }

    pub fn stop(&mut self) {
        let (code, out) = self.ocf("stop", 0);
        assert_eq!(code, 0, "stop: {out}");
        self.started = false;
    }

    /// Runs an admin command (`tandem-mail -d DIR ...`) in the namespace with `stdin`.
    pub fn admin(&self, args: &[&str], stdin: &str) -> (i32, String) {
        use std::io::Write;
        let mut child = self
            .mx
            .command(BIN)
            .arg("-d")
            .arg(&self.dir)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// `account add` that must succeed.
    pub fn add_account(&self, address: &str, class: &str, password: &str) {
        let (code, out) = self.admin(
            &["account", "add", address, "--class", class],
            &format!("{password}\n"),
        );
        assert_eq!(code, 0, "account add {address}: {out}");
    }

    /// The tail of every daemon log (for failure messages).
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.join("log")) {
            let mut names: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
            names.sort();
            for p in names {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                s.push_str(&format!("--- {} ---\n", p.display()));
                for l in tail.into_iter().rev() {
                    s.push_str(l);
                    s.push('\n');
                }
            }
        }
        s
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.started {
            let (code, out) = self.ocf("stop", 0);
            if code != 0 {
                eprintln!("stop on drop failed ({code}): {out}");
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// The base configuration of the tests: the thesis's defaults, a short lockout, and a local
/// rule that puts a message with "tag-band-probe" in its subject in the tag band (8 points:
/// above 6.6, below 15).
pub fn config(listen: &str, lockout: &str) -> String {
    format!(
        r#"# tandem-mail test configuration
hostname = "mail.example.com"
domains = ["example.com"]
listen = "{listen}"
postmaster = "boss@example.com"

[policy]
lockout_duration = "{lockout}"

[spam]
local_rules = """
header TANDEM_TAG_BAND Subject =~ /tag-band-probe/
score TANDEM_TAG_BAND 8.0
"""

[[account]]
address = "boss@example.com"
class = "admin"
"#
    )
}

/// Writes the configuration and a ClamAV signature database generated here (EICAR's MD5 by
/// `sigtool --md5`: there is no network for freshclam).
pub fn prepare_directory(dir: &Path, config_text: &str, work: &Path) {
    std::fs::write(dir.join("mail.toml"), config_text).unwrap();
    let db = dir.join("state/clamav");
    std::fs::create_dir_all(&db).unwrap();
    let sample = work.join("eicar.txt");
    std::fs::write(&sample, EICAR).unwrap();
    let sig = run("sigtool", &["--md5", &sample.to_string_lossy()]);
    std::fs::write(db.join("tandem-test.hdb"), sig).unwrap();
}

/// Python clients, written once per fixture.
pub const CLIENT_PY: &str = r#"
import imaplib, poplib, ssl, sys, json, socket
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
cmd, host = sys.argv[1], sys.argv[2]
def out(ok, **kw):
    kw["ok"] = ok; print(json.dumps(kw)); sys.exit(0 if ok else 1)
def connect(port, src, wrap):
    s = socket.create_connection((host, port), timeout=30, source_address=(src, 0) if src else None)
    return ctx.wrap_socket(s) if wrap else s
def imap(src, port=143, wrap=False):
    s = connect(port, src, wrap)
    class M(imaplib.IMAP4):
        def open(self, host="", port=143, timeout=None):
            self.host = host; self.port = port; self.sock = s; self.file = s.makefile("rb")
    return M(host)
def pop(src, port=110, wrap=False):
    s = connect(port, src, wrap)
    class P(poplib.POP3):
        def _create_socket(self, timeout):
            return s
    return P(host, port)
try:
    if cmd == "imap-login":          # host user password [source] [tls]
        user, pw = sys.argv[3], sys.argv[4]
        src = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else None
        tls = not (len(sys.argv) > 6 and sys.argv[6] == "plain")
        m = imap(src)
        if tls: m.starttls(ssl_context=ctx)
        m.login(user, pw); m.logout(); out(True)
    elif cmd == "login":             # host PROTOCOL user password [source]: imap imaps pop3 pop3s pop3-plain
        proto, user, pw = sys.argv[3], sys.argv[4], sys.argv[5]
        src = sys.argv[6] if len(sys.argv) > 6 and sys.argv[6] else None
        if proto == "imap":
            m = imap(src); m.starttls(ssl_context=ctx); m.login(user, pw); m.logout()
        elif proto == "imaps":
            m = imap(src, 993, True); m.login(user, pw); m.logout()
        elif proto in ("pop3", "pop3-plain", "pop3s"):
            p = pop(src, 995, True) if proto == "pop3s" else pop(src)
            if proto == "pop3": p.stls(context=ctx)
            p.user(user); p.pass_(pw); p.quit()
        else:
            out(False, error="unknown protocol " + proto)
        out(True)
    elif cmd == "imap-fetch":        # host user password mailbox
        user, pw, box = sys.argv[3], sys.argv[4], sys.argv[5]
        m = imaplib.IMAP4(host, 143, timeout=30); m.starttls(ssl_context=ctx); m.login(user, pw)
        typ, d = m.select(box, readonly=True)
        if typ != "OK": out(False, error="select " + box)
        typ, d = m.search(None, "ALL")
        msgs = []
        for n in d[0].split():
            typ, data = m.fetch(n, "(BODY.PEEK[])")
            msgs.append(data[0][1].decode("utf-8", "replace"))
        m.logout(); out(True, messages=msgs)
    elif cmd == "pop-login":         # host user password
        p = poplib.POP3(host, 110, timeout=30); p.stls(context=ctx)
        p.user(sys.argv[3]); p.pass_(sys.argv[4]); n, _ = p.stat(); p.quit(); out(True, messages=n)
    else:
        out(False, error="unknown command")
except Exception as e:
    out(False, error=str(e))
"#;

/// A remote MX: accepts every message and saves it as `N.eml` in `dir`.
pub const SINK_PY: &str = r#"
import socket, sys, os, threading
addr, outdir = sys.argv[1], sys.argv[2]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); srv.bind((addr, 25)); srv.listen(16)
count = [0]; lock = threading.Lock()
def handle(c):
    f = c.makefile("rb"); w = lambda s: c.sendall(s.encode() + b"\r\n")
    w("220 mx.remote.test ESMTP sink")
    while True:
        line = f.readline()
        if not line: break
        cmd = line.decode(errors="replace").strip().upper()
        if cmd.startswith("EHLO") or cmd.startswith("HELO"): w("250 mx.remote.test")
        elif cmd.startswith("DATA"):
            w("354 go on"); data = b""
            while True:
                l = f.readline()
                if l in (b".\r\n", b".\n", b""): break
                data += l[1:] if l.startswith(b"..") else l
            with lock:
                count[0] += 1; n = count[0]
            with open(os.path.join(outdir, "%d.eml.tmp" % n), "wb") as o: o.write(data)
            os.rename(os.path.join(outdir, "%d.eml.tmp" % n), os.path.join(outdir, "%d.eml" % n))
            w("250 2.0.0 stored")
        elif cmd.startswith("QUIT"): w("221 bye"); break
        else: w("250 ok")
    c.close()
while True:
    c, _ = srv.accept(); threading.Thread(target=handle, args=(c,), daemon=True).start()
"#;

/// The client side: runs tools in the client's namespace.
pub struct Client {
    pub host: Host,
    pub script: PathBuf,
}

impl Client {
    /// swaks in the client namespace; returns exit code and transcript.
    pub fn swaks(&self, args: &[&str]) -> (i32, String) {
        self.host.run_status("swaks", args)
    }

    /// Submission as a mail client does it: port 587, AUTH PLAIN as `user` (address, password)
    /// after STARTTLS, `helo`, envelope `from` → `to`, then `extra` swaks arguments (headers,
    /// body). Returns swaks' exit code and transcript.
    pub fn submit(
        &self,
        server: &str,
        helo: &str,
        user: (&str, &str),
        from: &str,
        to: &str,
        extra: &[&str],
    ) -> (i32, String) {
        let mut args = vec![
            "--server", server, "--port", "587", "-tls", "-a", "PLAIN", "--au", user.0, "--ap",
            user.1, "--helo", helo, "--from", from, "--to", to,
        ];
        args.extend_from_slice(extra);
        self.swaks(&args)
    }

    fn py(&self, args: &[&str]) -> (bool, serde_json::Value) {
        let mut full = vec![self.script.to_str().unwrap()];
        full.extend_from_slice(args);
        let (_, out) = self.host.run_status("/usr/bin/python3", &full);
        let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap_or("{}"))
            .unwrap_or_else(|_| serde_json::json!({"ok": false, "error": out}));
        (v["ok"] == true, v)
    }

    /// IMAP login with STARTTLS (optionally from `source`); Err carries the server's words.
    pub fn imap_login(
        &self,
        server: &str,
        user: &str,
        pw: &str,
        source: Option<&str>,
    ) -> Result<(), String> {
        let (ok, v) = self.py(&["imap-login", server, user, pw, source.unwrap_or("")]);
        if ok {
            Ok(())
        } else {
            Err(v["error"].to_string())
        }
    }

    /// IMAP login without TLS.
    pub fn imap_login_plain(&self, server: &str, user: &str, pw: &str) -> Result<(), String> {
        let (ok, v) = self.py(&["imap-login", server, user, pw, "", "plain"]);
        if ok {
            Ok(())
        } else {
            Err(v["error"].to_string())
        }
    }

    /// Every message of `mailbox`, whole.
    pub fn imap_fetch(
        &self,
        server: &str,
        user: &str,
        pw: &str,
        mailbox: &str,
    ) -> Result<Vec<String>, String> {
        let (ok, v) = self.py(&["imap-fetch", server, user, pw, mailbox]);
        if !ok {
            return Err(v["error"].to_string());
        }
        Ok(v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_owned())
            .collect())
    }

    /// A login over `protocol` (`imap` and `pop3` with STARTTLS/STLS, `imaps`, `pop3s`, or
    /// `pop3-plain` without TLS), optionally from `source`; Err carries the server's words.
    pub fn login(
        &self,
        server: &str,
        protocol: &str,
        user: &str,
        pw: &str,
        source: Option<&str>,
    ) -> Result<(), String> {
        let (ok, v) = self.py(&["login", server, protocol, user, pw, source.unwrap_or("")]);
        if ok {
            Ok(())
        } else {
            Err(v["error"].to_string())
        }
    }

    /// POP3 login with STLS.
    pub fn pop_login(&self, server: &str, user: &str, pw: &str) -> Result<(), String> {
        let (ok, v) = self.py(&["pop-login", server, user, pw]);
        if ok {
            Ok(())
        } else {
            Err(v["error"].to_string())
        }
    }
}

/// Test hosts on one LAN: `mx` (.1), `client` (.2, also .10–.49 for logins from many
/// addresses — Dovecot delays logins from an address that failed before — and .5 without
/// reverse DNS), `dns` (.3), `remote` (.4), `old` (.6).
pub struct World {
    pub work: tempfile::TempDir,
    pub mx: Host,
    pub client: Client,
    pub dns: Host,
    pub remote: Host,
    pub old: Host,
    pub sink_dir: PathBuf,
    daemons: Vec<Daemon>,
    lan: Lan,
}

impl World {
    pub fn new() -> World {
        tandem_testkit::require_root();
        let mut lan = Lan::new(0);
        let mx = lan.add_host_at(1);
        let client = lan.add_host_at(2);
        let dns = lan.add_host_at(3);
        let remote = lan.add_host_at(4);
        let old = lan.add_host_at(6);
        let net = lan.subnet.clone();
        for o in std::iter::once(5).chain(10..50) {
            run(
                "ip",
                &[
                    "-n",
                    &client.ns,
                    "addr",
                    "add",
                    &format!("{net}.{o}/24"),
                    "dev",
                    "eth0",
                ],
            );
        }
        // The host's resolver addresses, local in every namespace that resolves names.
        for ns in [&mx.ns, &client.ns, &remote.ns] {
            for a in host_nameservers().into_iter().filter(|a| !a.is_loopback()) {
                let (family, len) = if a.is_ipv4() { ("-4", 32) } else { ("-6", 128) };
                run(
                    "ip",
                    &[
                        "-n",
                        ns,
                        family,
                        "addr",
                        "add",
                        &format!("{a}/{len}"),
                        "dev",
                        "lo",
                    ],
                );
            }
        }
        let work = tempfile::tempdir().unwrap();
        let script = work.path().join("client.py");
        std::fs::write(&script, CLIENT_PY).unwrap();
        let sink_dir = work.path().join("sink");
        std::fs::create_dir(&sink_dir).unwrap();
        let sink_py = work.path().join("sink.py");
        std::fs::write(&sink_py, SINK_PY).unwrap();
        let mut sink = remote.command("/usr/bin/python3");
        sink.arg(&sink_py).arg(&remote.addr).arg(&sink_dir);
        let sink = Daemon::spawn("sink", sink, &work.path().join("sink.log"));
        World {
            client: Client {
                host: client,
                script,
            },
            mx,
            dns,
            remote,
            old,
            sink_dir,
            daemons: vec![sink],
            work,
            lan,
        }
    }

    /// The LAN's /24 prefix (`10.x.y`).
    pub fn net(&self) -> &str {
        &self.lan.subnet
    }

    /// Starts dnsmasq with the records of the tests; `extra` adds records (e.g. the DKIM TXT
    /// printed by `dns-records`, as `--txt-record=NAME,"part","part"` arguments). One
    /// instance answers on the `dns` host's address; one in each namespace that resolves
    /// (`mx`, `client`, `remote`) answers on the host's resolver addresses, which is where
    /// their programs ask (see [`host_nameservers`]).
    pub fn start_dns(&mut self, extra: &[String]) {
        let n = self.net().to_owned();
        let servers: Vec<(Host, Vec<String>)> =
            std::iter::once((self.dns.clone(), vec![self.dns.addr.clone()]))
                .chain(
                    [
                        self.mx.clone(),
                        self.client.host.clone(),
                        self.remote.clone(),
                    ]
                    .into_iter()
                    .map(|h| {
                        let addrs = host_nameservers().iter().map(|a| a.to_string()).collect();
                        (h, addrs)
                    }),
                )
                .collect();
        for (i, (host, listen)) in servers.into_iter().enumerate() {
            let pid = self.work.path().join(format!("dnsmasq{i}.pid"));
            let mut c = host.command("dnsmasq");
            c.args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--port=53",
                "--user=root",
                "--local=/#/",
                "--log-facility=-",
            ])
            .args(listen.iter().map(|a| format!("--listen-address={a}")))
            .arg(format!("--pid-file={}", pid.display()))
            .arg(format!("--host-record=mail.example.com,{n}.1"))
            .arg("--mx-host=example.com,mail.example.com,10")
            .arg(format!("--host-record=client.example.net,{n}.2"))
            .arg("--mx-host=example.net,client.example.net,10")
            .arg(format!("--host-record=mx.remote.test,{n}.4"))
            .arg("--mx-host=remote.test,mx.remote.test,10")
            .args(extra);
            for o in 10..50 {
                c.arg(format!("--host-record=c{o}.example.net,{n}.{o}"));
            }
            let log = self.work.path().join(format!("dnsmasq{i}.log"));
            self.daemons.push(Daemon::spawn("dnsmasq", c, &log));
        }
        for h in [&self.mx, &self.client.host, &self.remote] {
            wait::until(
                &format!("dnsmasq answers in {}", h.ns),
                Duration::from_secs(20),
                || h.run_status("getent", &["hosts", "mail.example.com"]).0 == 0,
            );
        }
    }

    /// Messages the remote MX received.
    pub fn sink_messages(&self) -> Vec<String> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.sink_dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        v.sort();
        v.iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// Keeps a daemon until the world is dropped.
    pub fn keep(&mut self, d: Daemon) {
        self.daemons.push(d);
    }
}

/// The DKIM TXT records `dns-records --json` prints, as dnsmasq arguments.
pub fn dkim_dnsmasq_args(dns_json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(dns_json).expect("dns-records --json");
    v.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "TXT" && r["name"].as_str().unwrap().contains("._domainkey."))
        .map(|r| {
            let name = r["name"].as_str().unwrap().trim_end_matches('.');
            let text = r["text"].as_str().unwrap();
            // dnsmasq keeps quote characters literally and splits long text into 255-byte
            // strings itself; the record holds no comma.
            assert!(!text.contains(','), "{text}");
            format!("--txt-record={name},{text}")
        })
        .collect()
}

/// A line of the form `<** 550 ...` (swaks' rejected reply) from a transcript.
pub fn rejection(transcript: &str) -> String {
    transcript
        .lines()
        .rfind(|l| l.starts_with("<**") || l.starts_with("<~*"))
        .unwrap_or("")
        .to_owned()
}

/// Runs a command that must succeed.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named case for [`Cases::parallel`].
pub type Case<'a> = (&'a str, Box<dyn FnOnce() -> Result<(), String> + Send + 'a>);

/// The pids of the processes in network namespace `ns`, but for the fixture's resolver.
pub fn ns_pids(ns: &str) -> Vec<i32> {
    // The fixture's own resolver (see `World::start_dns`) is not the agent's: the agent never
    // runs dnsmasq.
    ns_pids_all(ns)
        .into_iter()
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/exe"))
                .map_or(true, |e| e != Path::new("/usr/sbin/dnsmasq"))
        })
        .collect()
}

/// Every process in the namespace.
fn ns_pids_all(ns: &str) -> Vec<i32> {
    let out = Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .expect("ip netns pids");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Kills every process left in a namespace when dropped: a test whose `stop` failed must not
/// leave daemons running (deleting a namespace does not end its processes).
pub struct NsReaper(pub String);

impl Drop for NsReaper {
    fn drop(&mut self) {
        for pid in ns_pids_all(&self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Sub-cases of one system test: each runs, failures are collected, and the test fails at the
/// end with the list of failed cases and why.
pub struct Cases {
    failed: Vec<(String, String)>,
    passed: Vec<String>,
}

impl Cases {
    pub fn new() -> Cases {
        Cases {
            failed: Vec::new(),
            passed: Vec::new(),
        }
    }

    pub fn run(&mut self, name: &str, f: impl FnOnce() -> Result<(), String>) {
        let t = std::time::Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let outcome = match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(p) => Err(p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into())),
        };
        match outcome {
            Ok(()) => {
                eprintln!("case {name}: ok ({:.1}s)", t.elapsed().as_secs_f64());
                self.passed.push(name.to_owned());
            }
            Err(e) => {
                eprintln!("case {name}: FAILED: {e}");
                self.failed.push((name.to_owned(), e));
            }
        }
    }

    /// Runs lanes of cases at once, each lane's cases in order on a thread of its own (cases
    /// that mostly wait — Dovecot's 2 s delay after a failed login, a lock running out — and
    /// touch different accounts). Results join this list.
    pub fn parallel(&mut self, lanes: Vec<Vec<Case<'_>>>) {
        let done: Vec<Cases> = std::thread::scope(|s| {
            let handles: Vec<_> = lanes
                .into_iter()
                .map(|lane| {
                    s.spawn(move || {
                        let mut c = Cases::new();
                        for (name, f) in lane {
                            c.run(name, f);
                        }
                        c
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("cases catch their own panics"))
                .collect()
        });
        for c in done {
            self.failed.extend(c.failed);
            self.passed.extend(c.passed);
        }
    }

    /// Panics listing every failed case.
    pub fn finish(self, agent: Option<&Agent>) {
        eprintln!(
            "{} cases passed, {} failed",
            self.passed.len(),
            self.failed.len()
        );
        if !self.failed.is_empty() {
            let list: Vec<String> = self
                .failed
                .iter()
                .map(|(n, e)| format!("  - {n}: {e}"))
                .collect();
            if let Some(a) = agent {
                eprintln!("{}", a.logs());
            }
            panic!(
                "{} of {} cases failed:\n{}",
                self.failed.len(),
                self.failed.len() + self.passed.len(),
                list.join("\n")
            );
        }
    }
}

/// `check!(cond, "message {}", x)` inside a case: returns Err instead of panicking.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}
