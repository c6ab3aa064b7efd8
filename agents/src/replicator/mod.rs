//! `ocf:tandem:replicator`: a replicatord resource as a promotable clone, like
//! `ocf:linbit:drbd`. replicatord runs as a system service on each node; the agent drives it
//! with `replicatorctl` (found next to this binary first, then in PATH), reading its
//! documented exit codes ([`ctl`]) and `status --json` ([`state`]).
//!
//! - start = `replicatorctl up RES` (Secondary; a resource found Primary is demoted first, as
//!   the DRBD agent does: start leaves a promotable resource unpromoted);
//!   stop = `secondary` if needed, then `down`, tried until down within the timeout (a failed
//!   stop gets the node fenced); promote = `primary` (retried each second within the timeout
//!   while the refusal may pass, failing at once when this node has no good data: only an
//!   operator's `primary --force` helps then); demote = `secondary`.
//! - monitor: 8 Primary, 0 Secondary with a healthy disk, 7 down or replicatord not running,
//!   `OCF_FAILED_PROMOTED` (Primary) / `OCF_ERR_GENERIC` when the disk has Failed.
//! - A resource replicatord does not know on this node (its configuration lacks it): a probe
//!   answers 7 and stop succeeds (nothing of it can run here); other actions fail with
//!   `OCF_ERR_INSTALLED`, which bans this node only — as the DRBD agent does.
//! - promotion score from the disk states, with the DRBD agent's rules and default numbers
//!   (`adjust_master_score` = "0 10 1000 10000"): see [`state::score`]. Set through
//!   [`ocf::set_promotion_score`] (crm_master) in start, promote, demote, monitor (not probes
//!   of a stopped resource) and post notifications; removed at stop.

pub mod ctl;
pub mod state;

use std::time::Duration;

use ocf::{
    Action, ActionDef, Agent, Context, Metadata, NotifyType, OcfError, OcfResult, ParamDef, Role,
    Status,
};

pub use self::ctl::{Ctl, CtlExit, DEFAULT_CONFIG, DEFAULT_STATE_DIR, Seen};
pub use self::state::{
    Disk, ResState, ScoreChange, has_good_data, parse_adjust, parse_status, score,
};

const PARAMS: &[ParamDef] = &[
    ParamDef::string(
        "resource",
        "Replicated resource name",
        "The name of the resource in the .res configuration (DRBD's drbd_resource).",
    )
    .required()
    .unique()
    .aliases(&["drbd_resource"]),
    ParamDef::string(
        "config",
        "Configuration file",
        "The .res file that defines the resource: replicatord's --config (the agent checks the resource is in it; \
         the daemon itself reads its own).",
    )
    .default(DEFAULT_CONFIG),
    ParamDef::string(
        "state_dir",
        "replicatord state directory",
        "replicatord's --state-dir: its control socket (and the default NBD sockets) are there.",
    )
    .default(DEFAULT_STATE_DIR),
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
               with notify=true. replicatord must run as a service on every node; a new resource needs one \
               'replicatorctl primary --force RES' by hand (as drbdadm primary --force) before the cluster can \
               promote it.",
    params: PARAMS,
    actions: ACTIONS,
};

/// Pause between attempts refused for a reason that may pass (another command running, a peer
/// still Primary, replicatord shutting down).
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Time kept at the end of an action after a hung `replicatorctl` is given up, to report it.
const CTL_MARGIN: Duration = Duration::from_secs(2);

/// The `ocf:tandem:replicator` agent.
#[derive(Debug, Default)]
pub struct ReplicatorAgent;

/// `replicatorctl` for the resource, or `None` when it is not installed and replicatord is
/// not running either (no control socket): then nothing of the resource can run on this node,
/// which is what a probe and a stop must say (`OCF_NOT_RUNNING`, success) — not
/// `OCF_ERR_INSTALLED`, which fails a stop and gets the node fenced.
fn ctl_if_installed(ctx: &Context) -> Result<Option<Ctl>, OcfError> {
    match ctl_of(ctx) {
        Ok(c) => Ok(Some(c)),
        Err(e) if e.status == Status::ErrInstalled => {
            let socket =
                std::path::Path::new(ctx.params.required_str("state_dir")).join("control.sock");
            if socket.exists() {
                Err(e.context("replicatord is running here"))
            } else {
                ocf::warn!("{}: nothing of the resource can run on this node", e.reason);
                Ok(None)
            }
        }
        Err(e) => Err(e),
    }
}

fn ctl_of(ctx: &Context) -> Result<Ctl, OcfError> {
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
    for name in ["config", "state_dir"] {
        let v = p.required_str(name);
        if !v.starts_with('/') {
            return Err(OcfError::bad_param(name, v, "must be an absolute path"));
        }
    }
    Ok(Ctl {
        prog: Ctl::find()?,
        config: p.required_str("config").to_owned(),
        state_dir: p.required_str("state_dir").to_owned(),
        resource,
        deadline: ctx.deadline() - CTL_MARGIN.min(ctx.timeout / 4),
    })
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

/// The state of the resource for an action that needs replicatord to know it: no daemon is a
/// generic error (it may come back), a resource it does not know is `OCF_ERR_INSTALLED`.
fn known_state(ctl: &Ctl) -> Result<ResState, OcfError> {
    match ctl.status()? {
        Seen::Res(s) => Ok(s),
        Seen::NoDaemon(why) => Err(OcfError::generic(why)),
        Seen::NotConfigured(why) => Err(OcfError::new(Status::ErrInstalled, why)),
    }
}

/// Runs `replicatorctl VERB RES`, retrying each second while replicatord refuses for a reason
/// that passes (exit 10: another command on the resource still running, the daemon shutting
/// down) and the op's time allows; other failures are returned at once.
fn run_retrying(ctx: &Context, ctl: &Ctl, verb: &[&str]) -> Result<(), OcfError> {
    loop {
        match ctl.run(verb) {
            Ok(_) => return Ok(()),
            Err(e) if e.exit == CtlExit::Refused && ctx.remaining() >= RETRY_PAUSE * 2 => {
                ocf::info!("{}: {}; retrying", e.command, e.message);
                std::thread::sleep(RETRY_PAUSE);
            }
            Err(e) => return Err(e.into_ocf()),
        }
    }
}

/// The promotable-clone settings the agent supports, as the DRBD agent checks them:
/// `clone-node-max` and `promoted-node-max` 1, `promoted-max` at most 2, and 2 only with
/// `allow-two-primaries` (checked at start and promote).
fn check_clone_meta(ctx: &Context, ctl: &Ctl) -> Result<(), OcfError> {
    let c = &ctx.env.clone;
    let wrong = |what: &str, expected: &str, found: u32| {
        Err(OcfError::configured(format!(
            "meta attribute {what} must be {expected} for a replicated resource, found {found}"
        )))
    };
    if let Some(n) = c.clone_node_max.filter(|n| *n != 1) {
        return wrong("clone-node-max", "1", n);
    }
    if let Some(n) = c.promoted_node_max.filter(|n| *n != 1) {
        return wrong("promoted-node-max (master-node-max)", "1", n);
    }
    match c.promoted_max {
        Some(n) if n > 2 => wrong("promoted-max (master-max)", "at most 2", n),
        Some(2) if matches!(ctx.action, Action::Start | Action::Promote) => {
            if ctl.allows_two_primaries()? {
                Ok(())
            } else {
                Err(OcfError::configured(format!(
                    "promoted-max=2 but resource {} in {} does not set allow-two-primaries",
                    ctl.resource, ctl.config
                )))
            }
        }
        _ => Ok(()),
    }
}

impl Agent for ReplicatorAgent {
    fn metadata(&self) -> &Metadata {
        &META
    }

    fn validate(&self, ctx: &Context) -> Result<(), OcfError> {
        let adj = ctx.params.required_str("adjust_master_score");
        parse_adjust(adj).map_err(|why| OcfError::bad_param("adjust_master_score", adj, why))?;
        // Stop and monitor must answer whatever the configuration file says and whatever is
        // installed (a stop that fails gets the node fenced); replicatord's own answer covers
        // them.
        if matches!(ctx.action, Action::Stop | Action::Monitor | Action::Notify) {
            return ctl_of(ctx).map(|_| ()).or_else(|e| {
                if e.status == Status::ErrInstalled {
                    Ok(())
                } else {
                    Err(e)
                }
            });
        }
        let ctl = ctl_of(ctx)?;
        if !std::path::Path::new(&ctl.config).exists() {
            return Err(OcfError::new(
                Status::ErrInstalled,
                format!("configuration {} not found on this node", ctl.config),
            ));
        }
        ctl.check_config()?;
        check_clone_meta(ctx, &ctl)?;
        if ctx.action == Action::ValidateAll {
            if !ctx.env.clone.is_promotable() {
                ocf::warn!(
                    "not configured as a promotable clone (promoted-max unset): it will never be promoted"
                );
            } else if !ctx.env.clone.notify {
                ocf::warn!(
                    "notify=true is not set on the clone: scores are then refreshed only by monitor"
                );
            }
        }
        Ok(())
    }

    fn start(&self, ctx: &Context) -> OcfResult {
        let ctl = ctl_of(ctx)?;
        match known_state(&ctl)? {
            ResState::Down => run_retrying(ctx, &ctl, &["up"])?,
            ResState::Up { primary: true, .. } => {
                ocf::warn!("{} already Primary at start, demoting", ctl.resource);
                run_retrying(ctx, &ctl, &["secondary"])?;
            }
            ResState::Up { .. } => {}
        }
        let state = known_state(&ctl)?;
        match &state {
            ResState::Down => {
                return Err(OcfError::generic(format!(
                    "{} is still down after up",
                    ctl.resource
                )));
            }
            ResState::Up { primary: true, .. } => {
                return Err(OcfError::generic(format!(
                    "{} is still Primary after secondary",
                    ctl.resource
                )));
            }
            ResState::Up {
                disk: Disk::Failed, ..
            } => {
                return Err(OcfError::generic(format!(
                    "{}: the disk failed while attaching",
                    ctl.resource
                )));
            }
            ResState::Up { .. } => {}
        }
        update_score(ctx, &state);
        Ok(Status::Success)
    }

    fn stop(&self, ctx: &Context) -> OcfResult {
        let Some(ctl) = ctl_if_installed(ctx)? else {
            return Ok(Status::Success);
        };
        // A failed stop gets the node fenced: keep trying (as the DRBD agent) until the
        // resource is down or the op's time is nearly out.
        loop {
            let step = match ctl.status()? {
                Seen::NoDaemon(why) => {
                    ocf::info!("{why}: {} cannot be up", ctl.resource);
                    break;
                }
                Seen::NotConfigured(why) => {
                    ocf::warn!("{why}: nothing to stop");
                    break;
                }
                Seen::Res(ResState::Down) => break,
                Seen::Res(ResState::Up { primary: true, .. }) => {
                    ocf::warn!("{} still Primary at stop, demoting", ctl.resource);
                    ctl.run(&["secondary"])
                }
                Seen::Res(ResState::Up { .. }) => ctl.run(&["down"]),
            };
            if let Err(e) = step {
                if ctx.remaining() < RETRY_PAUSE * 2 {
                    return Err(e
                        .into_ocf()
                        .context(format!("{} is still up", ctl.resource)));
                }
                ocf::info!("{}: {}; retrying", e.command, e.message);
                std::thread::sleep(RETRY_PAUSE);
            }
        }
        // Do not leave a score behind: it may confuse the cluster after a standby.
        update_score(ctx, &ResState::Down);
        Ok(Status::Success)
    }

    fn monitor(&self, ctx: &Context) -> OcfResult {
        let Some(ctl) = ctl_if_installed(ctx)? else {
            return Ok(Status::NotRunning);
        };
        let state = match ctl.status()? {
            Seen::Res(s) => s,
            Seen::NoDaemon(why) => {
                ocf::debug!("{why}");
                if !ctx.env.is_probe() {
                    update_score(ctx, &ResState::Down);
                }
                return Ok(Status::NotRunning);
            }
            Seen::NotConfigured(why) if ctx.env.is_probe() => {
                ocf::debug!("{why}");
                return Ok(Status::NotRunning);
            }
            Seen::NotConfigured(why) => {
                update_score(ctx, &ResState::Down);
                return Err(OcfError::new(Status::ErrInstalled, why));
            }
        };
        // A probe that finds it stopped leaves the score alone (the DRBD agent's rule: the
        // other node's score must not be disturbed by this node's probes).
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
        let ctl = ctl_of(ctx)?;
        loop {
            let state = known_state(&ctl)?;
            match &state {
                ResState::Down => {
                    return Err(OcfError::generic(
                        "cannot promote a resource that was not started",
                    ));
                }
                ResState::Up { primary: true, .. } => {
                    update_score(ctx, &state);
                    return Ok(Status::Success);
                }
                ResState::Up { .. } => {}
            }
            let Err(e) = ctl.run(&["primary"]) else {
                continue;
            };
            if e.exit == CtlExit::Refused && !has_good_data(&state) {
                // Waiting cannot help: no UpToDate or Consistent data here or at a peer.
                update_score(ctx, &state);
                let hint = if e.message.contains("primary --force") {
                    String::new()
                } else {
                    format!(
                        " (a new resource needs 'replicatorctl primary --force {}' once, by hand)",
                        ctl.resource
                    )
                };
                return Err(OcfError::generic(format!(
                    "cannot promote {} without access to UpToDate data: {}{hint}",
                    ctl.resource, e.message
                )));
            }
            if matches!(e.exit, CtlExit::MetaData | CtlExit::Config)
                || ctx.remaining() < RETRY_PAUSE * 2
            {
                return Err(e.into_ocf().context("promotion refused"));
            }
            ocf::info!("{}: {}; retrying", e.command, e.message);
            std::thread::sleep(RETRY_PAUSE);
        }
    }

    fn demote(&self, ctx: &Context) -> OcfResult {
        let ctl = ctl_of(ctx)?;
        match known_state(&ctl)? {
            ResState::Down => {
                // As the DRBD agent: not running is what the cluster must learn.
                ocf::error!("demote of {}, which was not started", ctl.resource);
                Ok(Status::NotRunning)
            }
            ResState::Up { primary: false, .. } => Ok(Status::Success),
            ResState::Up { .. } => {
                run_retrying(ctx, &ctl, &["secondary"])?;
                match known_state(&ctl)? {
                    s @ ResState::Up { primary: false, .. } => {
                        update_score(ctx, &s);
                        Ok(Status::Success)
                    }
                    _ => Err(OcfError::generic(format!(
                        "{} is still Primary after secondary",
                        ctl.resource
                    ))),
                }
            }
        }
    }

    fn notify(&self, ctx: &Context) -> OcfResult {
        let Some(n) = &ctx.env.notify else {
            return Ok(Status::Success);
        };
        // As the DRBD agent: after any operation, recheck the state and the score. Before one
        // there is nothing to prepare: replicatord connects to its peers by itself once up.
        if n.kind == NotifyType::Post {
            let ctl = ctl_of(ctx)?;
            match ctl.status() {
                Ok(Seen::Res(state)) => update_score(ctx, &state),
                Ok(other) => ocf::debug!("post-{:?} notification: {other:?}", n.operation),
                Err(e) => ocf::warn!("post-{:?} notification: {e}", n.operation),
            }
        } else {
            ocf::debug!("pre-{:?} notification: nothing to do", n.operation);
        }
        Ok(Status::Success)
    }
}
