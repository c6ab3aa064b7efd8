//! A small OCF 1.1 resource-agent library shared by every Tandem agent (`tandem-ipaddr`,
//! `tandem-filesystem`, `tandem-replicator`, `tandem-mail`).
//!
//! An agent is a binary whose only argument is the OCF action and whose configuration comes
//! from `OCF_RESKEY_*` variables. With this library it is a value implementing [`Agent`]:
//!
//! ```no_run
//! use ocf::{Action, ActionDef, Agent, Context, Metadata, OcfError, OcfResult, ParamDef, Status};
//!
//! const PARAMS: &[ParamDef] = &[
//!     ParamDef::string("path", "State file", "The file whose presence means running.").required().unique(),
//! ];
//! const ACTIONS: &[ActionDef] = &[
//!     ActionDef::new(Action::Start, 20),
//!     ActionDef::new(Action::Stop, 20),
//!     ActionDef::monitor(20, 10),
//!     ActionDef::new(Action::MetaData, 5),
//!     ActionDef::new(Action::ValidateAll, 20),
//! ];
//! struct Flag;
//! impl Agent for Flag {
//!     fn metadata(&self) -> &Metadata {
//!         const M: Metadata = Metadata { name: "Flag", version: "1.0", shortdesc: "A flag file",
//!             longdesc: "Creates a file.", params: PARAMS, actions: ACTIONS };
//!         &M
//!     }
//!     fn validate(&self, ctx: &Context) -> Result<(), OcfError> {
//!         let p = ctx.params.required_str("path");
//!         if !p.starts_with('/') { return Err(OcfError::bad_param("path", p, "must be absolute")); }
//!         Ok(())
//!     }
//!     fn start(&self, ctx: &Context) -> OcfResult {
//!         std::fs::write(ctx.params.required_str("path"), b"").map_err(|e| OcfError::generic(e.to_string()))?;
//!         Ok(Status::Success)
//!     }
//!     fn stop(&self, ctx: &Context) -> OcfResult {
//!         let _ = std::fs::remove_file(ctx.params.required_str("path"));
//!         Ok(Status::Success)
//!     }
//!     fn monitor(&self, ctx: &Context) -> OcfResult {
//!         let there = std::path::Path::new(ctx.params.required_str("path")).exists();
//!         Ok(if there { Status::Success } else { Status::NotRunning })
//!     }
//! }
//! fn main() -> std::process::ExitCode { ocf::run(&Flag) }
//! ```
//!
//! What the library does for every agent:
//! - [`Status`]: the OCF 1.1 exit codes (0–9, 190, 191) as a typed enum;
//! - [`Env`]: `OCF_RESKEY_*`, `OCF_RESKEY_CRM_meta_*` (interval and timeout in ms, clone and
//!   notify variables), `OCF_RESOURCE_INSTANCE`, `OCF_CHECK_LEVEL`, read once, pure and tested;
//! - [`ParamDef`] → both [`Params`] (typed values; bad ones are `OCF_ERR_CONFIGURED` naming
//!   the parameter and value) and the `meta-data` XML ([`Metadata::to_xml`]), valid against
//!   Debian's `ra-api-1.dtd` and OCF 1.1 `metadata.rng`;
//! - [`dispatch`]/[`run`]: argument checks (wrong count → 2, unknown action → 3), parameter
//!   parsing and [`Agent::validate`] before every action, `validate-all`, exit codes, the
//!   `ocf-exit-reason:` line;
//! - [`log`] macros ([`info!`], [`warn!`], [`error!`], [`debug!`]) writing `ocf_log`-style
//!   lines to stderr, which Pacemaker and clusterd record;
//! - [`tools`]: finding and running external tools (a missing one is `OCF_ERR_INSTALLED`);
//! - [`promotion`]: the promotion score via `crm_master`, the one way that works under both
//!   Pacemaker and clusterd.

pub mod agent;
pub mod env;
pub mod error;
pub mod log;
pub mod metadata;
pub mod param;
pub mod promotion;
pub mod status;
pub mod tools;

pub use agent::{Agent, Context, dispatch, run};
pub use env::{CheckLevel, CloneInfo, Env, Notify, NotifyOperation, NotifyType};
pub use error::{OcfError, OcfResult};
pub use metadata::{Action, ActionDef, Metadata, Role};
pub use param::{ParamDef, ParamType, Params};
pub use promotion::{promotion_score, set_promotion_score};
pub use status::Status;
