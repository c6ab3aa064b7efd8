//! Running one clusterctl command.

use crate::client::{ClientError, call};
use anyhow::{Context, anyhow, bail};
use clusterd_core::cib::{Agent, Cib, CibFile, CibFormat};
use clusterd_core::control::{Request, Response};
use clusterd_core::pcs::{self, Command, ResourceView};
use clusterd_core::status::ClusterStatus;
use clusterd_core::{lint, report, sched, simulate, xml};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Documented exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    Ok = 0,
    Failed = 1,
    Usage = 2,
    Unreachable = 3,
}

const DEFAULT_STATE_DIR: &str = "/var/lib/clusterd";

const USAGE: &str = "usage: clusterctl [--state-dir DIR] [-f FILE] COMMAND ...
  resource create NAME AGENT [k=v]... [op NAME k=v...]... [meta k=v...] [clone|promotable [k=v...]] [--group G] [--disabled]
  resource promotable|clone NAME [CLONE_ID] [k=v]...   resource master [CLONE_ID] NAME [k=v]...
  resource group add GROUP RSC... [--before|--after RSC]   resource group remove GROUP [RSC...]
  resource show|status|config [NAME]   resource enable|disable NAME...   resource delete NAME
  resource update NAME [k=v]... [op ...] [meta k=v...]   resource meta NAME k=v...
  resource cleanup [NAME] [node=NODE]   resource move|ban NAME NODE   resource clear NAME [NODE]
  resource restart NAME [--wait=SECS]   resource manage|unmanage NAME...   resource failcount show [NAME] [node=N]
  resource op add NAME OP k=v...   resource op remove NAME OP [k=v...]   resource op remove OP_ID
  resource defaults [update] k=v...   resource op defaults [update] k=v...
  constraint colocation add [ROLE] A with [ROLE] B [SCORE] [with-rsc-role=R] [rsc-role=R] [id=ID]
  constraint order [ACTION] A then [ACTION] B [kind=Mandatory|Optional|Serialize] [symmetrical=BOOL]
  constraint location RSC prefers|avoids NODE[=SCORE]...   constraint location RSC rule [score=S] EXPR
  constraint [list]   constraint ref RSC...   constraint remove ID...
  node standby|unstandby NODE|--all   node maintenance|unmaintenance NODE   node attribute NODE k=v
  cluster standby|unstandby NODE   cluster setup NAME NODE...   cluster cib [FILE]   cluster cib-push FILE
  property set k=v...   property unset NAME   property [list]
  status [--full] [--json]   lint   simulate [-x PACEMAKER.xml] [--json]   why RESOURCE
  cib export [--pacemaker]   cib import PACEMAKER.xml
";

struct Globals {
    file: Option<PathBuf>,
    state_dir: PathBuf,
    rest: Vec<String>,
}

fn globals(args: &[String]) -> Result<Globals, String> {
    let mut file = None;
    let mut state_dir = std::env::var("CLUSTERD_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(DEFAULT_STATE_DIR));
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        match a.as_str() {
            "-f" => {
                file = Some(PathBuf::from(args.get(i + 1).ok_or("'-f' needs a FILE")?));
                i += 2;
                continue;
            }
            "--state-dir" => {
                state_dir = PathBuf::from(args.get(i + 1).ok_or("'--state-dir' needs a DIR")?);
                i += 2;
                continue;
            }
            _ if a.starts_with("--state-dir=") => {
                state_dir = PathBuf::from(&a["--state-dir=".len()..])
            }
            _ if rest.is_empty() && a.starts_with("-f") && a.len() > 2 => {
                file = Some(PathBuf::from(&a[2..]))
            }
            _ => rest.push(a.clone()),
        }
        i += 1;
    }
    Ok(Globals {
        file,
        state_dir,
        rest,
    })
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Resolves a bare agent name the way pcs does: look for it under the OCF root
/// (`heartbeat`, then `pacemaker`, then `tandem`), else assume `ocf:heartbeat:NAME`.
fn resolver() -> impl Fn(&str) -> Option<Agent> {
    let root = std::env::var("OCF_ROOT").unwrap_or_else(|_| "/usr/lib/ocf".into());
    move |name: &str| {
        ["heartbeat", "pacemaker", "tandem"]
            .iter()
            .find(|p| {
                Path::new(&root)
                    .join("resource.d")
                    .join(p)
                    .join(name)
                    .exists()
            })
            .map(|p| Agent::ocf(p, name))
    }
}

/// Loads `-f FILE`; a missing file is a new configuration (XML if it ends in .xml).
fn load_file(path: &Path) -> anyhow::Result<CibFile> {
    match std::fs::read(path) {
        Ok(bytes) => CibFile::from_bytes(&bytes).with_context(|| format!("{}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let format = if path.extension().is_some_and(|x| x == "xml") {
                CibFormat::PacemakerXml
            } else {
                CibFormat::Native
            };
            Ok(CibFile {
                cib: pcs::new_configuration(),
                base_version: None,
                format,
            })
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes atomically (temporary file in the same directory, fsync, rename).
fn save_file(path: &Path, file: &CibFile) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{}: not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&file.to_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

struct Ctx<'a> {
    g: Globals,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
}

impl Ctx<'_> {
    fn call(&self, req: &Request) -> Result<Response, ClientError> {
        call(&self.g.state_dir, req)
    }

    fn ok_or_fail(&self, resp: Response) -> anyhow::Result<Response> {
        match resp {
            Response::Error { kind, message } => bail!("clusterd refused ({kind:?}): {message}"),
            r => Ok(r),
        }
    }

    fn online_cib(&self) -> anyhow::Result<Cib> {
        match self.ok_or_fail(self.call(&Request::GetCib)?)? {
            Response::Cib { cib } => Ok(cib),
            r => bail!("unexpected reply from clusterd: {r:?}"),
        }
    }

    fn online_status(
        &self,
    ) -> anyhow::Result<(Cib, ClusterStatus, Option<clusterd_core::Transition>)> {
        match self.ok_or_fail(self.call(&Request::Status)?)? {
            Response::Status {
                cib,
                status,
                transition,
            } => Ok((cib, status, transition)),
            r => bail!("unexpected reply from clusterd: {r:?}"),
        }
    }

    /// The configuration (and status, when online) the command reads.
    fn source(
        &mut self,
    ) -> anyhow::Result<(Cib, ClusterStatus, Option<clusterd_core::Transition>)> {
        match &self.g.file {
            Some(f) => {
                let file = load_file(f)?;
                // A Pacemaker CIB brings its status section; otherwise (or when it has none)
                // assume every configured node online with nothing running yet — the question
                // "what would this configuration do on a fresh cluster".
                let mut status = match file.format {
                    CibFormat::PacemakerXml => {
                        let text = std::fs::read_to_string(f).unwrap_or_default();
                        xml::import(&text).map(|i| i.status).unwrap_or_default()
                    }
                    CibFormat::Native => ClusterStatus::default(),
                };
                if status.nodes.is_empty() {
                    let names: Vec<&str> = file.cib.nodes.iter().map(|n| n.name.as_str()).collect();
                    status = ClusterStatus::all_online(&names);
                    let _ = writeln!(
                        self.err,
                        "(offline file: assuming every configured node online, nothing running yet)"
                    );
                }
                Ok((file.cib, status, None))
            }
            None => self.online_status(),
        }
    }

    fn warn(&mut self, warnings: &[lint::Warning]) {
        for w in warnings {
            let _ = writeln!(self.err, "{w}");
        }
    }

    fn push(
        &mut self,
        cib: Cib,
        expected: Option<clusterd_core::cib::CibVersion>,
    ) -> anyhow::Result<()> {
        match self.ok_or_fail(self.call(&Request::PushCib { cib, expected })?)? {
            Response::Pushed { version } => {
                let _ = writeln!(self.err, "CIB updated (version {version})");
                Ok(())
            }
            r => bail!("unexpected reply from clusterd: {r:?}"),
        }
    }
}

fn run(ctx: &mut Ctx<'_>, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Edit(edits) => {
            let resolve = resolver();
            match ctx.g.file.clone() {
                Some(path) => {
                    let mut file = load_file(&path)?;
                    let warnings = pcs::apply(&mut file.cib, &edits, &resolve)?;
                    save_file(&path, &file)?;
                    ctx.warn(&warnings);
                }
                None => {
                    let mut cib = ctx.online_cib()?;
                    let base = cib.version;
                    let warnings = pcs::apply(&mut cib, &edits, &resolve)?;
                    ctx.push(cib, Some(base))?;
                    ctx.warn(&warnings);
                }
            }
        }
        Command::ClusterCib { file } => {
            let (cib, base) = match &ctx.g.file {
                Some(f) => {
                    let loaded = load_file(f)?;
                    (loaded.cib, loaded.base_version)
                }
                None => {
                    let cib = ctx.online_cib()?;
                    let v = cib.version;
                    (cib, Some(v))
                }
            };
            let out_file = CibFile {
                cib,
                base_version: base,
                format: CibFormat::Native,
            };
            match file {
                Some(path) => {
                    let path = PathBuf::from(path);
                    let format = if path.extension().is_some_and(|x| x == "xml") {
                        CibFormat::PacemakerXml
                    } else {
                        CibFormat::Native
                    };
                    save_file(&path, &CibFile { format, ..out_file })?;
                }
                None => ctx.out.write_all(&out_file.to_bytes())?,
            }
        }
        Command::ClusterCibPush { file } => {
            let loaded = load_file(Path::new(&file))?;
            if !Path::new(&file).exists() {
                bail!("{file}: no such file");
            }
            let lints = lint::lint(&loaded.cib);
            ctx.warn(&lints);
            ctx.push(loaded.cib, loaded.base_version)?;
        }
        Command::Auth => {
            let _ = writeln!(
                ctx.out,
                "clusterd needs no authentication: clusterctl talks to the local daemon over its root-only socket. Nothing to do."
            );
        }
        Command::Status { json, full } => {
            let (cib, status, transition) = ctx.source()?;
            if json {
                let rep = report::status_report(&cib, &status, transition.as_ref(), now_s());
                writeln!(ctx.out, "{}", serde_json::to_string_pretty(&rep)?)?;
            } else {
                ctx.out.write_all(
                    report::status_text_with(&cib, &status, transition.as_ref(), now_s(), full)
                        .as_bytes(),
                )?;
            }
        }
        Command::Resources { id, view } => {
            let (cib, status, _) = ctx.source()?;
            if let Some(i) = &id
                && !cib.contains(i)
            {
                bail!("resource '{i}' does not exist");
            }
            let text = match view {
                ResourceView::Status => {
                    report::resources_text(&cib, &status, id.as_deref(), now_s())
                }
                ResourceView::Config => report::config_text(&cib, id.as_deref()),
            };
            ctx.out.write_all(text.as_bytes())?;
        }
        Command::Constraints => {
            let (cib, ..) = ctx.source()?;
            ctx.out
                .write_all(report::constraints_text(&cib).as_bytes())?;
        }
        Command::Properties => {
            let (cib, ..) = ctx.source()?;
            ctx.out
                .write_all(report::properties_text(&cib).as_bytes())?;
        }
        Command::Cleanup { resource, node } => {
            if ctx.g.file.is_some() {
                bail!(
                    "'resource cleanup' acts on the running cluster's failure history; run it without -f"
                );
            }
            ctx.ok_or_fail(ctx.call(&Request::Cleanup {
                resource: resource.clone(),
                node: node.clone(),
            })?)?;
            let _ = writeln!(
                ctx.out,
                "Cleaned up {} on {}",
                resource.as_deref().unwrap_or("all resources"),
                node.as_deref().unwrap_or("all nodes")
            );
        }
        Command::Lint => {
            let (cib, ..) = ctx.source()?;
            let warnings = lint::lint(&cib);
            if warnings.is_empty() {
                let _ = writeln!(ctx.out, "no warnings");
            }
            for w in &warnings {
                writeln!(ctx.out, "{w}")?;
            }
        }
        Command::Simulate { xml: x, json } => {
            let (cib, status) = match x {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {path}"))?;
                    let imported = xml::import(&text).with_context(|| path.clone())?;
                    (imported.cib, imported.status)
                }
                None => {
                    let (c, s, _) = ctx.source()?;
                    (c, s)
                }
            };
            let analysis = sched::analyse(&cib, &status, now_s());
            let summary = analysis.summary();
            let t = analysis.transition;
            if json {
                writeln!(
                    ctx.out,
                    "{}",
                    serde_json::to_string_pretty(&simulate::json_placement(&t))?
                )?;
            } else {
                writeln!(ctx.out, "Transition Summary:")?;
                for l in summary {
                    writeln!(ctx.out, "{l}")?;
                }
                writeln!(ctx.out, "\nActions:")?;
                for a in &t.actions {
                    let after: Vec<String> = a.after.iter().map(|d| d.0.to_string()).collect();
                    writeln!(
                        ctx.out,
                        "  {:>3}  {:<40} after [{}]",
                        a.id.0,
                        a.key(),
                        after.join(",")
                    )?;
                }
                writeln!(ctx.out, "\nResulting placement:")?;
                for p in simulate::json_placement(&t) {
                    writeln!(
                        ctx.out,
                        "  {:<30} {:<11} {}",
                        p.resource,
                        p.role.as_str(),
                        p.node.as_deref().unwrap_or("-")
                    )?;
                }
            }
        }
        Command::Restart { resource, wait_s } => restart(ctx, &resource, wait_s)?,
        Command::FailCounts { resource, node } => {
            let (cib, status, _) = ctx.source()?;
            if let Some(r) = &resource
                && !cib.contains(r)
            {
                bail!("resource '{r}' does not exist");
            }
            ctx.out.write_all(
                report::failcounts_text(
                    &cib,
                    &status,
                    resource.as_deref(),
                    node.as_deref(),
                    now_s(),
                )
                .as_bytes(),
            )?;
        }
        Command::ConstraintRef { ids } => {
            let (cib, ..) = ctx.source()?;
            ctx.out
                .write_all(report::constraint_ref_text(&cib, &ids).as_bytes())?;
        }
        Command::Why { resource } => {
            let (cib, status, _) = ctx.source()?;
            let text = report::why(&cib, &status, &resource, now_s()).map_err(|e| anyhow!(e))?;
            ctx.out.write_all(text.as_bytes())?;
        }
        Command::CibExport { pacemaker } => {
            let (cib, status, _) = ctx.source()?;
            if pacemaker {
                let st = ctx.g.file.is_none().then_some(&status);
                ctx.out.write_all(xml::export(&cib, st).as_bytes())?;
            } else {
                ctx.out.write_all(&cib.to_file_bytes())?;
            }
        }
        Command::CibImport { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
            let imported = xml::import(&text).with_context(|| file.clone())?;
            imported.cib.validate()?;
            ctx.warn(&lint::lint(&imported.cib));
            match ctx.g.file.clone() {
                Some(path) => {
                    let format = if path.extension().is_some_and(|x| x == "xml") {
                        CibFormat::PacemakerXml
                    } else {
                        CibFormat::Native
                    };
                    save_file(
                        &path,
                        &CibFile {
                            cib: imported.cib,
                            base_version: None,
                            format,
                        },
                    )?;
                }
                None => {
                    let current = ctx.online_cib()?;
                    let mut cib = imported.cib;
                    cib.version = current.version;
                    ctx.push(cib, Some(current.version))?;
                }
            }
        }
    }
    Ok(())
}

/// How often `resource restart` polls clusterd while it waits.
const RESTART_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// `resource restart RSC`, as `crm_resource --restart`: `target-role=Stopped` (so whatever
/// depends on it stops first, in order), wait until it is stopped, put its `target-role` back,
/// wait until it runs again. Each wait gives up after `wait_s` seconds; a failed stop wait puts
/// the `target-role` back before failing.
fn restart(ctx: &mut Ctx<'_>, rsc: &str, wait_s: u64) -> anyhow::Result<()> {
    if ctx.g.file.is_some() {
        bail!("'resource restart' acts on the running cluster; run it without -f");
    }
    let mut cib = ctx.online_cib()?;
    let Some(found) = cib.find(rsc) else {
        bail!("resource '{rsc}' does not exist");
    };
    let prims = report::found_primitives(&found);
    let base = cib.version;
    let before = cib
        .meta_mut(rsc)
        .expect("found above")
        .insert("target-role".into(), "Stopped".into());
    cib.bump_epoch();
    ctx.push(cib, Some(base))?;
    let restore = |ctx: &mut Ctx<'_>| -> anyhow::Result<()> {
        let mut cib = ctx.online_cib()?;
        let base = cib.version;
        let m = cib
            .meta_mut(rsc)
            .ok_or_else(|| anyhow!("resource '{rsc}' vanished while restarting"))?;
        match &before {
            Some(v) => m.insert("target-role".into(), v.clone()),
            None => m.remove("target-role"),
        };
        cib.bump_epoch();
        ctx.push(cib, Some(base))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_s);
    let stopped = wait_until(ctx, deadline, |t, placements| {
        t.is_none()
            && placements
                .iter()
                .filter(|p| prims.contains(&p.primitive))
                .all(|p| p.current_node.is_none())
    })?;
    if !stopped {
        restore(ctx)?;
        bail!("'{rsc}' did not stop within {wait_s}s; its target-role was put back");
    }
    restore(ctx)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_s);
    let settled = wait_until(ctx, deadline, |t, placements| {
        t.is_none()
            && placements
                .iter()
                .filter(|p| prims.contains(&p.primitive))
                .all(|p| p.current_node == p.node && p.current_role == p.role)
    })?;
    if !settled {
        bail!(
            "'{rsc}' was stopped but has not started again within {wait_s}s (see 'clusterctl status')"
        );
    }
    let _ = writeln!(ctx.out, "{rsc} successfully restarted");
    Ok(())
}

/// Polls clusterd until `done(transition in progress, placements now)` or the deadline.
fn wait_until(
    ctx: &Ctx<'_>,
    deadline: std::time::Instant,
    done: impl Fn(Option<&clusterd_core::Transition>, &[clusterd_core::transition::Placement]) -> bool,
) -> anyhow::Result<bool> {
    loop {
        let (cib, status, transition) = ctx.online_status()?;
        let placements = sched::analyse(&cib, &status, now_s()).transition.placements;
        if done(transition.as_ref(), &placements) {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(RESTART_POLL);
    }
}

/// Runs clusterctl with these arguments; returns the exit code.
pub fn main_with_args(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let g = match globals(args) {
        Ok(g) => g,
        Err(e) => {
            let _ = writeln!(err, "clusterctl: {e}\n{USAGE}");
            return ExitCode::Usage;
        }
    };
    if g.rest.is_empty() || g.rest.iter().any(|a| a == "--help" || a == "-h") {
        let _ = write!(out, "{USAGE}");
        return if g.rest.is_empty() {
            ExitCode::Usage
        } else {
            ExitCode::Ok
        };
    }
    let cmd = match pcs::parse(&g.rest) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "clusterctl: {e}");
            return ExitCode::Usage;
        }
    };
    let mut ctx = Ctx { g, out, err };
    match run(&mut ctx, cmd) {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            let unreachable = e
                .downcast_ref::<ClientError>()
                .is_some_and(|c| matches!(c, ClientError::Connect { .. } | ClientError::Io(_)));
            let _ = writeln!(ctx.err, "clusterctl: {e:#}");
            if unreachable {
                ExitCode::Unreachable
            } else {
                ExitCode::Failed
            }
        }
    }
}
