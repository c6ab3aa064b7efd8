//! The [`Agent`] trait and the dispatcher that turns `argv[1]` and the environment into a call
//! of one of its methods and an exit code.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::{Action, Env, Metadata, OcfError, OcfResult, Params, Status};

/// Timeout assumed when neither the manager nor the meta-data gives one.
pub const FALLBACK_TIMEOUT: Duration = Duration::from_secs(20);

/// What an action method gets: the action, the environment, the parsed parameters and the
/// time it must finish by.
#[derive(Debug, Clone)]
pub struct Context {
    /// The action being run.
    pub action: Action,
    /// The environment.
    pub env: Env,
    /// The parameters, checked against the agent's definitions.
    pub params: Params,
    /// When the action started.
    pub started: Instant,
    /// The op timeout: the manager's (`CRM_meta_timeout`), else the meta-data's default for
    /// this action, else [`FALLBACK_TIMEOUT`]. The manager kills the agent at this point, so
    /// long actions (stop killing holders, waiting for a peer) plan within it.
    pub timeout: Duration,
}

impl Context {
    /// Builds a context (used by the dispatcher; public for agents' unit tests).
    pub fn new(action: Action, env: Env, params: Params, meta: &Metadata) -> Context {
        let default = meta
            .default_timeout_s(action)
            .map(|s| Duration::from_secs(u64::from(s)))
            .unwrap_or(FALLBACK_TIMEOUT);
        let timeout = env.timeout_or(default);
        Context {
            action,
            env,
            params,
            started: Instant::now(),
            timeout,
        }
    }

    /// When the manager will give up on this action.
    pub fn deadline(&self) -> Instant {
        self.started + self.timeout
    }

    /// Time left before the deadline (zero if past).
    pub fn remaining(&self) -> Duration {
        self.deadline().saturating_duration_since(Instant::now())
    }
}

/// A resource agent. Implement `metadata`, `start`, `stop` and `monitor`; the other actions
/// answer `OCF_ERR_UNIMPLEMENTED` unless overridden (and must also be listed in the
/// meta-data's actions, or the dispatcher refuses them as unknown).
///
/// Every method returns [`OcfResult`]: `Ok(Status::Success)` (or `NotRunning`,
/// `RunningPromoted`... from `monitor`), or an [`OcfError`] carrying the exit code and a
/// reason that is printed as `ocf-exit-reason:`.
pub trait Agent {
    /// The agent's meta-data (parameters, actions, descriptions).
    fn metadata(&self) -> &Metadata;

    /// Checks the configuration beyond what the parameter types check (an address that parses,
    /// a directory that is absolute, a tool that is installed...). Runs before every action
    /// except `meta-data`, and is all `validate-all` does.
    fn validate(&self, _ctx: &Context) -> Result<(), OcfError> {
        Ok(())
    }

    /// Starts the resource (unpromoted, for a promotable one). Must succeed if it runs already.
    fn start(&self, ctx: &Context) -> OcfResult;

    /// Stops the resource. Must succeed if it is stopped already; a failure here gets the node
    /// fenced, so try hard within the timeout.
    fn stop(&self, ctx: &Context) -> OcfResult;

    /// Reports the state: `Success`, `NotRunning`, `RunningPromoted`, or an error.
    fn monitor(&self, ctx: &Context) -> OcfResult;

    /// Promotes.
    fn promote(&self, _ctx: &Context) -> OcfResult {
        Err(OcfError::unimplemented(
            "promote is not implemented by this agent",
        ))
    }

    /// Demotes.
    fn demote(&self, _ctx: &Context) -> OcfResult {
        Err(OcfError::unimplemented(
            "demote is not implemented by this agent",
        ))
    }

    /// Handles a clone notification (`ctx.env.notify`). Must not fail without reason.
    fn notify(&self, _ctx: &Context) -> OcfResult {
        Err(OcfError::unimplemented(
            "notify is not implemented by this agent",
        ))
    }

    /// Applies changed parameters.
    fn reload(&self, _ctx: &Context) -> OcfResult {
        Err(OcfError::unimplemented(
            "reload is not implemented by this agent",
        ))
    }
}

/// The usage text.
pub fn usage(meta: &Metadata) -> String {
    let names: Vec<&str> = meta.actions.iter().map(|a| a.action.name()).collect();
    let mut uniq: Vec<&str> = Vec::new();
    for n in names {
        if !uniq.contains(&n) {
            uniq.push(n);
        }
    }
    format!(
        "usage: {} {{{}}}\n\nAn OCF 1.1 resource agent ({}): parameters come from OCF_RESKEY_* variables;\n`meta-data` describes them.\n",
        meta.name,
        uniq.join("|"),
        meta.shortdesc
    )
}

/// Runs one invocation: `args` are the arguments after the program name, `env` the parsed
/// environment, `out` where meta-data and usage go (stdout). Logs and the exit reason go to
/// stderr. Returns the exit status.
///
/// - not exactly one argument → usage on stderr, `OCF_ERR_ARGS` (2);
/// - `meta-data` → the XML, 0 (no environment needed); `usage`/`help` → usage, 0;
/// - an action the agent does not list → `OCF_ERR_UNIMPLEMENTED` (3);
/// - otherwise parameters are parsed and [`Agent::validate`] runs; `validate-all` stops there.
pub fn dispatch<A: Agent + ?Sized>(
    agent: &A,
    args: &[String],
    env: Result<Env, OcfError>,
    out: &mut dyn Write,
) -> Status {
    let meta = agent.metadata();
    if args.len() != 1 {
        let _ = write!(std::io::stderr(), "{}", usage(meta));
        return Status::ErrArgs;
    }
    let arg = args[0].as_str();
    match arg {
        "meta-data" => {
            let _ = out.write_all(meta.to_xml().as_bytes());
            return Status::Success;
        }
        "usage" | "help" | "--help" | "-h" => {
            let _ = out.write_all(usage(meta).as_bytes());
            return Status::Success;
        }
        _ => {}
    }
    let Some(action) = Action::parse(arg).filter(|a| meta.supports(*a)) else {
        crate::error!("action {arg:?} is not implemented by {}", meta.name);
        return Status::ErrUnimplemented;
    };
    let result = (|| {
        let env = env?;
        let params = Params::parse(meta.params, &env)?;
        let ctx = Context::new(action, env, params, meta);
        agent.validate(&ctx)?;
        crate::debug!("{} begins (timeout {:?})", action.name(), ctx.timeout);
        match action {
            Action::ValidateAll => Ok(Status::Success),
            Action::Start => agent.start(&ctx),
            Action::Stop => agent.stop(&ctx),
            Action::Monitor => agent.monitor(&ctx),
            Action::Promote => agent.promote(&ctx),
            Action::Demote => agent.demote(&ctx),
            Action::Notify => agent.notify(&ctx),
            Action::Reload => agent.reload(&ctx),
            Action::MetaData => unreachable!("handled above"),
        }
    })();
    match result {
        Ok(status) => status,
        Err(e) => {
            crate::log::exit_reason(&format!("{}: {}", action.name(), e.reason));
            e.status
        }
    }
}

/// The whole `main` of an agent binary: `fn main() -> ExitCode { ocf::run(&MyAgent) }`.
/// Reads `argv` and the process environment, sets up logging, dispatches.
pub fn run<A: Agent + ?Sized>(agent: &A) -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = Env::from_process();
    if let Ok(e) = &env {
        crate::log::init(agent.metadata().name, &e.instance, e.debug);
    }
    let status = dispatch(agent, &args, env, &mut std::io::stdout().lock());
    let _ = std::io::stdout().flush();
    status.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActionDef, ParamDef};
    use std::cell::RefCell;

    struct Fake {
        calls: RefCell<Vec<&'static str>>,
    }

    const PARAMS: &[ParamDef] = &[ParamDef::integer("n", 0, 10, "n", "A number.").required()];
    const ACTIONS: &[ActionDef] = &[
        ActionDef::new(Action::Start, 30),
        ActionDef::new(Action::Stop, 30),
        ActionDef::monitor(20, 10),
        ActionDef::new(Action::MetaData, 5),
        ActionDef::new(Action::ValidateAll, 5),
    ];
    const META: Metadata = Metadata {
        name: "Fake",
        version: "1",
        shortdesc: "fake",
        longdesc: "Fake.",
        params: PARAMS,
        actions: ACTIONS,
    };

    impl Agent for Fake {
        fn metadata(&self) -> &Metadata {
            &META
        }
        fn validate(&self, ctx: &Context) -> Result<(), OcfError> {
            self.calls.borrow_mut().push("validate");
            if ctx.params.int("n") == Some(7) {
                return Err(OcfError::bad_param("n", "7", "seven is unlucky"));
            }
            Ok(())
        }
        fn start(&self, ctx: &Context) -> OcfResult {
            self.calls.borrow_mut().push("start");
            assert_eq!(
                ctx.timeout,
                Duration::from_secs(30),
                "meta-data default when the manager gives none"
            );
            Ok(Status::Success)
        }
        fn stop(&self, _: &Context) -> OcfResult {
            self.calls.borrow_mut().push("stop");
            Err(OcfError::generic("cannot"))
        }
        fn monitor(&self, ctx: &Context) -> OcfResult {
            self.calls.borrow_mut().push("monitor");
            assert_eq!(ctx.timeout, Duration::from_millis(1500));
            Ok(Status::NotRunning)
        }
    }

    fn go(args: &[&str], vars: &[(&str, &str)]) -> (Status, String, Vec<&'static str>) {
        let agent = Fake {
            calls: RefCell::new(Vec::new()),
        };
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        let st = dispatch(
            &agent,
            &args,
            Env::from_vars(vars.iter().map(|(k, v)| (*k, *v))),
            &mut out,
        );
        (
            st,
            String::from_utf8(out).unwrap(),
            agent.calls.into_inner(),
        )
    }

    #[test]
    fn wrong_argument_count_is_err_args() {
        assert_eq!(go(&[], &[]).0, Status::ErrArgs);
        assert_eq!(go(&["start", "now"], &[]).0, Status::ErrArgs);
    }

    #[test]
    fn unknown_or_unlisted_action_is_unimplemented() {
        assert_eq!(go(&["frobnicate"], &[]).0, Status::ErrUnimplemented);
        assert_eq!(
            go(&["promote"], &[("OCF_RESKEY_n", "1")]).0,
            Status::ErrUnimplemented
        );
        assert_eq!(go(&["migrate_to"], &[]).0, Status::ErrUnimplemented);
    }

    #[test]
    fn meta_data_needs_no_environment() {
        let (st, out, calls) = go(&["meta-data"], &[]);
        assert_eq!(st, Status::Success);
        assert!(out.contains("<resource-agent name=\"Fake\""));
        assert!(calls.is_empty());
        let (st, out, _) = go(&["usage"], &[]);
        assert_eq!(st, Status::Success);
        assert!(
            out.starts_with("usage: Fake {start|stop|monitor|meta-data|validate-all}"),
            "{out}"
        );
    }

    #[test]
    fn parameters_and_validate_run_before_the_action() {
        assert_eq!(go(&["start"], &[]).0, Status::ErrConfigured);
        assert_eq!(
            go(&["start"], &[("OCF_RESKEY_n", "eleven")]).0,
            Status::ErrConfigured
        );
        let (st, _, calls) = go(&["start"], &[("OCF_RESKEY_n", "7")]);
        assert_eq!((st, calls), (Status::ErrConfigured, vec!["validate"]));
        let (st, _, calls) = go(&["validate-all"], &[("OCF_RESKEY_n", "3")]);
        assert_eq!((st, calls), (Status::Success, vec!["validate"]));
        let (st, _, calls) = go(&["start"], &[("OCF_RESKEY_n", "3")]);
        assert_eq!((st, calls), (Status::Success, vec!["validate", "start"]));
    }

    #[test]
    fn action_results_become_exit_codes() {
        let vars = [
            ("OCF_RESKEY_n", "3"),
            ("OCF_RESKEY_CRM_meta_timeout", "1500"),
        ];
        assert_eq!(go(&["monitor"], &vars).0, Status::NotRunning);
        assert_eq!(go(&["stop"], &vars).0, Status::ErrGeneric);
        assert_eq!(
            go(
                &["monitor"],
                &[("OCF_RESKEY_n", "3"), ("OCF_RESKEY_CRM_meta_timeout", "x")]
            )
            .0,
            Status::ErrConfigured
        );
    }
}
