//! `ocf:tandem:replicator`: a replicatord resource as a promotable clone, like
//! `ocf:linbit:drbd`. replicatord runs as a system service on each node; the agent drives it
//! with `replicatorctl` (found next to this binary first, then in PATH).
//!
//! - start = `replicatorctl up RES` (Secondary); stop = `secondary` if needed, then `down`;
//!   promote = `primary` (retried each second within the timeout, as the DRBD agent does,
//!   failing when the state refuses); demote = `secondary`.
//! - monitor: 8 Primary, 0 Secondary with a healthy disk, 7 down (or replicatord not running),
//!   `OCF_FAILED_PROMOTED` (Primary) / `OCF_ERR_GENERIC` when the disk has Failed.
//! - promotion score from the disk states, with the DRBD agent's rules and default numbers
//!   (`adjust_master_score` = "0 10 1000 10000"): see [`score`]. Set through
//!   [`ocf::set_promotion_score`] (crm_master) in start, monitor (not probes) and post
//!   notifications; removed at stop.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ocf::{
    Action, ActionDef, Agent, Context, Metadata, NotifyType, OcfError, OcfResult, ParamDef, Role,
    Status, tools,
};
use serde_json::Value;

const PARAMS: &[ParamDef] = &[
    ParamDef::string(
        "resource",
        "Replicated resource name",
        "The name of the resource in the .res configuration (DRBD's drbd_resource).",
    )
    .required()
    .aliases(&["drbd_resource"]),
    ParamDef::string("config", "Configuration file", "The .res file replicatord and replicatorctl read.")
        .default("/etc/tandem/replicator.res"),
    ParamDef::string("state_dir", "replicatord state directory", "replicatord's state directory (its control socket is there).")
        .default("/var/lib/tandem/replicator"),
    ParamDef::string(
        "adjust_master_score",
        "Promotion scores",
        "Four space-separated promotion scores, as in ocf:linbit:drbd: only Consistent data; only the peer has \
         UpToDate data; UpToDate here but Secondary with the peer's disk unknown; UpToDate here and Primary or the \
         peer's disk known. Inconsistent, Outdated or failed data gets no score at all.",
    )
    .default("0 10 1000 10000"),
];

const ACTIONS: &[ActionDef] = &[
    ActionDef::new(Action::Start, 240),
    ActionDef::new(Action::Promote, 90),
    ActionDef::new(Action::Demote, 90),
    ActionDef::new(Action::Notify, 90),
    ActionDef::new(Action::Stop, 100),
    ActionDef::monitor(20, 29).role(Role::Promoted),
    ActionDef::monitor(20, 31).role(Role::Unpromoted),
    ActionDef::new(Action::MetaData, 5),
    ActionDef::new(Action::ValidateAll, 30),
];

const META: Metadata = Metadata {
    name: "replicator",
    version: "1.0",
    shortdesc: "Manages a Tandem replicated resource as a promotable clone",
    longdesc: "Tandem's counterpart of ocf:linbit:drbd: start brings the resource up as Secondary, promote makes it \
               Primary (its NBD export then accepts clients), demote returns to Secondary, stop takes it down. The \
               promotion score follows the disk state as the DRBD agent's does. Configure it as a promotable clone \
               with notify=true. replicatord must run as a service on every node.",
    params: PARAMS,
    actions: ACTIONS,
};

/// Disk states (DRBD's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disk {
    /// Diskless.
    Diskless,
    /// Attaching.
    Attaching,
    /// Detaching.
    Detaching,
    /// Failed.
    Failed,
    /// Negotiating.
    Negotiating,
    /// Inconsistent.
    Inconsistent,
    /// Outdated.
    Outdated,
    /// Unknown (a peer's, when not connected).
    DUnknown,
    /// Consistent.
    Consistent,
    /// UpToDate.
    UpToDate,
}

impl Disk {
    /// Parses a state name (case-insensitive).
    pub fn parse(s: &str) -> Option<Disk> {
        Some(match s.to_ascii_lowercase().as_str() {
            "diskless" => Disk::Diskless,
            "attaching" => Disk::Attaching,
            "detaching" => Disk::Detaching,
            "failed" => Disk::Failed,
            "negotiating" => Disk::Negotiating,
            "inconsistent" => Disk::Inconsistent,
            "outdated" => Disk::Outdated,
            "dunknown" | "unknown" => Disk::DUnknown,
            "consistent" => Disk::Consistent,
            "uptodate" => Disk::UpToDate,
            _ => return None,
        })
    }
}

/// What `replicatorctl status --json` says about the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResState {
    /// Not up (or replicatord does not know it).
    Down,
    /// Up.
    Up {
        /// Primary?
        primary: bool,
        /// Local disk.
        disk: Disk,
        /// The peers' disks (empty for a standalone resource).
        peer_disks: Vec<Disk>,
    },
}

fn str_field<'a>(v: &'a Value, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| v.get(*n).and_then(Value::as_str))
}

/// Parses `replicatorctl status --json RES` output: an object (or `{"resources": [..]}` with
/// the resource named `name`) with `role`, `disk` (or `disk_state`), and peers either as
/// `peers: [{disk|disk_state|peer_disk}]` or a top-level `peer_disk`.
pub fn parse_status(json: &str, name: &str) -> Result<ResState, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("status is not JSON: {e}"))?;
    let res = match v.get("resources").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .find(|r| str_field(r, &["name", "resource"]) == Some(name))
            .ok_or_else(|| format!("status does not list resource {name}"))?,
        None => &v,
    };
    if res.get("up").and_then(Value::as_bool) == Some(false) {
        return Ok(ResState::Down);
    }
    let role = str_field(res, &["role"]).ok_or("status has no role")?;
    let primary = match role.to_ascii_lowercase().as_str() {
        "primary" => true,
        "secondary" => false,
        "unconfigured" | "down" => return Ok(ResState::Down),
        _ => return Err(format!("unknown role {role:?}")),
    };
    let disk_name = str_field(res, &["disk", "disk_state"]).ok_or("status has no disk state")?;
    let disk = Disk::parse(disk_name).ok_or_else(|| format!("unknown disk state {disk_name:?}"))?;
    let mut peer_disks = Vec::new();
    if let Some(peers) = res.get("peers").and_then(Value::as_array) {
        for p in peers {
            let d = str_field(p, &["disk", "disk_state", "peer_disk"]).unwrap_or("DUnknown");
            peer_disks
                .push(Disk::parse(d).ok_or_else(|| format!("unknown peer disk state {d:?}"))?);
        }
    } else if let Some(d) = str_field(res, &["peer_disk", "peer_disk_state"]) {
        peer_disks.push(Disk::parse(d).ok_or_else(|| format!("unknown peer disk state {d:?}"))?);
    }
    Ok(ResState::Up {
        primary,
        disk,
        peer_disks,
    })
}

/// What to do with the promotion score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreChange {
    /// Set it.
    Set(i64),
    /// Delete it (no promotion here).
    Remove,
    /// Leave it (a transitional disk state).
    Keep,
}

/// The DRBD agent's `drbd_update_master_score` for one volume: `adjust` is
/// (only_consistent, only_remote, local_ok, as_good_as_it_gets).
pub fn score(state: &ResState, adjust: [i64; 4]) -> ScoreChange {
    let [only_consistent, only_remote, local_ok, best] = adjust;
    let ResState::Up {
        primary,
        disk,
        peer_disks,
    } = state
    else {
        return ScoreChange::Remove;
    };
    let peers_all_up_to_date =
        !peer_disks.is_empty() && peer_disks.iter().all(|d| *d == Disk::UpToDate);
    let any_peer_unknown = peer_disks.contains(&Disk::DUnknown);
    match disk {
        Disk::UpToDate if *primary || !any_peer_unknown => ScoreChange::Set(best),
        Disk::UpToDate => ScoreChange::Set(local_ok),
        _ if peers_all_up_to_date => ScoreChange::Set(only_remote),
        Disk::Attaching | Disk::Negotiating => ScoreChange::Keep,
        Disk::Consistent => ScoreChange::Set(only_consistent),
        _ => ScoreChange::Remove,
    }
}

/// Parses `adjust_master_score`.
pub fn parse_adjust(s: &str) -> Result<[i64; 4], String> {
    let v: Vec<i64> = s
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| "expected four integers")?;
    let a: [i64; 4] = v.try_into().map_err(|_| "expected exactly four integers")?;
    if a.windows(2).any(|w| w[0] > w[1]) {
        return Err("the four scores must not decrease".into());
    }
    Ok(a)
}

/// The `ocf:tandem:replicator` agent.
#[derive(Debug, Default)]
pub struct ReplicatorAgent;

struct Ctl {
    prog: PathBuf,
    config: String,
    state_dir: String,
    resource: String,
}

impl Ctl {
    fn new(ctx: &Context) -> Result<Ctl, OcfError> {
        let p = &ctx.params;
        let resource = p.required_str("resource").to_owned();
        if resource.is_empty()
            || !resource
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(OcfError::bad_param(
                "resource",
                &resource,
                "not a resource name (letters, digits, - _ .)",
            ));
        }
        // clusterd runs Tandem's binaries from one directory: prefer the replicatorctl there.
        let beside = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("replicatorctl")));
        let prog = match beside.filter(|p| p.exists()) {
            Some(p) => p,
            None => tools::require_tool("replicatorctl", Some("tandem (replicatorctl)"))?,
        };
        Ok(Ctl {
            prog,
            config: p.required_str("config").to_owned(),
            state_dir: p.required_str("state_dir").to_owned(),
            resource,
        })
    }

    fn cmd(&self, verb: &[&str]) -> Command {
        let mut c = Command::new(&self.prog);
        c.args(["--state-dir", &self.state_dir, "--config", &self.config])
            .args(verb)
            .arg(&self.resource);
        c
    }

    fn daemon_running(&self) -> bool {
        std::path::Path::new(&self.state_dir)
            .join("control.sock")
            .exists()
    }

    fn status(&self) -> Result<ResState, OcfError> {
        if !self.daemon_running() {
            return Ok(ResState::Down);
        }
        let out = tools::output(&mut self.cmd(&["status", "--json"]))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
            if err.contains("not up")
                || err.contains("down")
                || err.contains("unknown resource")
                || err.contains("not running")
            {
                return Ok(ResState::Down);
            }
            return Err(OcfError::generic(format!(
                "replicatorctl status {} failed ({}): {}",
                self.resource,
                out.status,
                err.trim()
            )));
        }
        parse_status(&stdout, &self.resource)
            .map_err(|e| OcfError::generic(format!("replicatorctl status: {e}")))
    }

    fn run(&self, verb: &[&str]) -> Result<(), OcfError> {
        tools::checked(&mut self.cmd(verb)).map(|_| ())
    }
}

fn update_score(ctx: &Context, state: &ResState) {
    let adjust = parse_adjust(ctx.params.required_str("adjust_master_score"))
        .unwrap_or([0, 10, 1000, 10000]);
    let change = score(state, adjust);
    let r = match change {
        ScoreChange::Set(n) => ocf::set_promotion_score(&ctx.env, Some(n)),
        ScoreChange::Remove => ocf::set_promotion_score(&ctx.env, None),
        ScoreChange::Keep => Ok(()),
    };
    match r {
        Ok(()) => ocf::debug!("promotion score: {change:?}"),
        // Outside a cluster (ocf-tester) there is no CIB; the DRBD agent goes on as well.
        Err(e) => ocf::warn!("{e}"),
    }
}

impl Agent for ReplicatorAgent {
    fn metadata(&self) -> &Metadata {
        &META
    }

    fn validate(&self, ctx: &Context) -> Result<(), OcfError> {
        let adj = ctx.params.required_str("adjust_master_score");
        parse_adjust(adj).map_err(|why| OcfError::bad_param("adjust_master_score", adj, why))?;
        let ctl = Ctl::new(ctx)?;
        if ctx.action != Action::Stop && !std::path::Path::new(&ctl.config).exists() {
            return Err(OcfError::new(
                Status::ErrInstalled,
                format!("configuration {} not found on this node", ctl.config),
            ));
        }
        if !ctx.env.clone.is_promotable() && ctx.action == Action::ValidateAll {
            ocf::warn!(
                "not configured as a promotable clone (promoted-max unset): it will never be promoted"
            );
        }
        Ok(())
    }

    fn start(&self, ctx: &Context) -> OcfResult {
        let ctl = Ctl::new(ctx)?;
        if !ctl.daemon_running() {
            return Err(OcfError::generic(format!(
                "replicatord is not running (no control socket in {})",
                ctl.state_dir
            )));
        }
        if ctl.status()? == ResState::Down {
            ctl.run(&["up"])?;
        }
        let state = ctl.status()?;
        if state == ResState::Down {
            return Err(OcfError::generic(format!(
                "{} is still down after up",
                ctl.resource
            )));
        }
        update_score(ctx, &state);
        Ok(Status::Success)
    }

    fn stop(&self, ctx: &Context) -> OcfResult {
        let ctl = Ctl::new(ctx)?;
        let state = ctl.status()?;
        if let ResState::Up { primary, .. } = state {
            if primary {
                ocf::warn!("{} still Primary at stop, demoting", ctl.resource);
                ctl.run(&["secondary"])?;
            }
            ctl.run(&["down"])?;
        }
        if ctl.status()? != ResState::Down {
            return Err(OcfError::generic(format!(
                "{} is still up after down",
                ctl.resource
            )));
        }
        update_score(ctx, &ResState::Down);
        Ok(Status::Success)
    }

    fn monitor(&self, ctx: &Context) -> OcfResult {
        let ctl = Ctl::new(ctx)?;
        let state = ctl.status()?;
        if !(state == ResState::Down && ctx.env.is_probe()) {
            update_score(ctx, &state);
        }
        match state {
            ResState::Down => Ok(Status::NotRunning),
            ResState::Up {
                primary: true,
                disk: Disk::Failed | Disk::Diskless,
                ..
            } => Err(OcfError::failed_promoted(format!(
                "{} is Primary but its disk has failed",
                ctl.resource
            ))),
            ResState::Up {
                disk: Disk::Failed, ..
            } => Err(OcfError::generic(format!(
                "{}: the disk has failed",
                ctl.resource
            ))),
            ResState::Up { primary: true, .. } => Ok(Status::RunningPromoted),
            ResState::Up { .. } => Ok(Status::Success),
        }
    }

    fn promote(&self, ctx: &Context) -> OcfResult {
        let ctl = Ctl::new(ctx)?;
        loop {
            match ctl.status()? {
                ResState::Down => {
                    return Err(OcfError::generic(
                        "cannot promote a resource that was not started",
                    ));
                }
                ResState::Up { primary: true, .. } => return Ok(Status::Success),
                ResState::Up { .. } => {}
            }
            if let Err(e) = ctl.run(&["primary"]) {
                if ctx.remaining() < Duration::from_secs(2) {
                    return Err(e.context("promotion refused"));
                }
                ocf::info!("{e}; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }

    fn demote(&self, ctx: &Context) -> OcfResult {
        let ctl = Ctl::new(ctx)?;
        match ctl.status()? {
            ResState::Down => Err(OcfError::generic(
                "cannot demote a resource that was not started",
            )),
            ResState::Up { primary: false, .. } => Ok(Status::Success),
            ResState::Up { .. } => {
                ctl.run(&["secondary"])?;
                match ctl.status()? {
                    ResState::Up { primary: false, .. } => Ok(Status::Success),
                    _ => Err(OcfError::generic(format!(
                        "{} is still Primary after secondary",
                        ctl.resource
                    ))),
                }
            }
        }
    }

    fn notify(&self, ctx: &Context) -> OcfResult {
        // As the DRBD agent: after any operation, recheck the state and the score.
        if let Some(n) = &ctx.env.notify
            && n.kind == NotifyType::Post
        {
            let ctl = Ctl::new(ctx)?;
            match ctl.status() {
                Ok(state) => update_score(ctx, &state),
                Err(e) => ocf::warn!("post-{:?} notification: {e}", n.operation),
            }
        }
        Ok(Status::Success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEF: [i64; 4] = [0, 10, 1000, 10000];

    fn up(primary: bool, disk: Disk, peers: &[Disk]) -> ResState {
        ResState::Up {
            primary,
            disk,
            peer_disks: peers.to_vec(),
        }
    }

    #[test]
    fn scores_follow_the_drbd_agent() {
        use Disk::*;
        assert_eq!(
            score(&up(true, UpToDate, &[DUnknown]), DEF),
            ScoreChange::Set(10000)
        );
        assert_eq!(
            score(&up(false, UpToDate, &[UpToDate]), DEF),
            ScoreChange::Set(10000)
        );
        assert_eq!(
            score(&up(false, UpToDate, &[Inconsistent]), DEF),
            ScoreChange::Set(10000),
            "SyncSource"
        );
        assert_eq!(
            score(&up(false, UpToDate, &[]), DEF),
            ScoreChange::Set(10000),
            "standalone"
        );
        assert_eq!(
            score(&up(false, UpToDate, &[DUnknown]), DEF),
            ScoreChange::Set(1000)
        );
        assert_eq!(
            score(&up(false, Inconsistent, &[UpToDate]), DEF),
            ScoreChange::Set(10),
            "SyncTarget"
        );
        assert_eq!(
            score(&up(false, Outdated, &[UpToDate]), DEF),
            ScoreChange::Set(10)
        );
        assert_eq!(
            score(&up(false, Consistent, &[DUnknown]), DEF),
            ScoreChange::Set(0)
        );
        assert_eq!(
            score(&up(false, Outdated, &[DUnknown]), DEF),
            ScoreChange::Remove
        );
        assert_eq!(
            score(&up(false, Inconsistent, &[]), DEF),
            ScoreChange::Remove
        );
        assert_eq!(
            score(&up(false, Failed, &[DUnknown]), DEF),
            ScoreChange::Remove
        );
        assert_eq!(
            score(&up(false, Attaching, &[DUnknown]), DEF),
            ScoreChange::Keep
        );
        assert_eq!(score(&ResState::Down, DEF), ScoreChange::Remove);
        assert_eq!(
            score(&up(false, Consistent, &[]), [5, 10, 1000, 10000]),
            ScoreChange::Set(5)
        );
    }

    #[test]
    fn status_json_shapes() {
        let s = parse_status(
            r#"{"resource":"r0","role":"Primary","disk":"UpToDate","connection":"StandAlone"}"#,
            "r0",
        );
        assert_eq!(s, Ok(up(true, Disk::UpToDate, &[])));
        let s = parse_status(
            r#"{"role":"Secondary","disk_state":"Inconsistent","peers":[{"name":"b","disk":"UpToDate"}]}"#,
            "r0",
        );
        assert_eq!(s, Ok(up(false, Disk::Inconsistent, &[Disk::UpToDate])));
        let s = parse_status(
            r#"{"resources":[{"name":"x","role":"Primary","disk":"UpToDate"},{"name":"r0","role":"Secondary","disk":"UpToDate","peer_disk":"DUnknown"}]}"#,
            "r0",
        );
        assert_eq!(s, Ok(up(false, Disk::UpToDate, &[Disk::DUnknown])));
        assert_eq!(parse_status(r#"{"up":false}"#, "r0"), Ok(ResState::Down));
        assert_eq!(
            parse_status(r#"{"role":"Unconfigured"}"#, "r0"),
            Ok(ResState::Down)
        );
        assert!(
            parse_status(r#"{"role":"Boss","disk":"UpToDate"}"#, "r0")
                .unwrap_err()
                .contains("Boss")
        );
        assert!(
            parse_status(r#"{"role":"Primary","disk":"Shiny"}"#, "r0")
                .unwrap_err()
                .contains("Shiny")
        );
        assert!(
            parse_status(r#"{"resources":[]}"#, "r0")
                .unwrap_err()
                .contains("r0")
        );
        assert!(parse_status("nope", "r0").is_err());
    }

    #[test]
    fn adjust_scores_parse() {
        assert_eq!(parse_adjust("0 10 1000 10000"), Ok(DEF));
        assert!(parse_adjust("0 10 1000").is_err());
        assert!(parse_adjust("0 10 x 10000").is_err());
        assert!(
            parse_adjust("0 1000 10 10000")
                .unwrap_err()
                .contains("decrease")
        );
    }
}
