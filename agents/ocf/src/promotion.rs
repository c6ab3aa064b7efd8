//! Promotion scores: how a promotable agent tells the cluster where it would like to be
//! promoted.
//!
//! Under Pacemaker and under clusterd alike this is `crm_master -l reboot -v N` (set) and
//! `crm_master -l reboot -D` (delete), exactly as ocf-shellfuncs' `ocf_promotion_score` and
//! the DRBD agent do: Pacemaker ships `crm_master` in `/usr/sbin`; clusterd puts a shim of the
//! same name in a directory it exports as `HA_SBIN_DIR` (and puts first in `PATH`), together
//! with `CLUSTERD_CONTROL`. `crm_master` names the attribute after `OCF_RESOURCE_INSTANCE`,
//! which the manager sets and the child process inherits. The attribute lives until reboot.

use std::path::PathBuf;
use std::process::Command;

use crate::{Env, OcfError, tools};

/// The `crm_master` to run: `$HA_SBIN_DIR/crm_master` if it exists, else the first on the
/// search path, else `/usr/sbin/crm_master`.
pub fn crm_master_path(env: &Env) -> PathBuf {
    if let Some(dir) = &env.ha_sbin_dir {
        let p = PathBuf::from(dir).join("crm_master");
        if p.exists() {
            return p;
        }
    }
    tools::find_tool("crm_master").unwrap_or_else(|| PathBuf::from("/usr/sbin/crm_master"))
}

/// The arguments for setting (`Some(score)`) or deleting (`None`) the score.
pub fn crm_master_args(score: Option<i64>) -> Vec<String> {
    match score {
        Some(s) => vec![
            "-Q".into(),
            "-l".into(),
            "reboot".into(),
            "-v".into(),
            s.to_string(),
        ],
        None => vec!["-l".into(), "reboot".into(), "-D".into()],
    }
}

/// Sets this instance's promotion score to `score`, or deletes it with `None` (no score: the
/// cluster will not promote this instance). Errors are `OCF_ERR_GENERIC` with crm_master's
/// message; callers in `monitor` usually log them and go on, as the DRBD agent does, since
/// outside a cluster (e.g. under `ocf-tester`) there is no CIB to write to.
pub fn set_promotion_score(env: &Env, score: Option<i64>) -> Result<(), OcfError> {
    if env.instance.is_empty() {
        return Err(OcfError::configured(
            "OCF_RESOURCE_INSTANCE is not set; crm_master needs it to name the score",
        ));
    }
    let mut cmd = Command::new(crm_master_path(env));
    cmd.args(crm_master_args(score))
        .env("OCF_RESOURCE_INSTANCE", &env.instance);
    tools::checked(&mut cmd)
        .map(|_| ())
        .map_err(|e| e.context("cannot set the promotion score"))
}

/// Reads this instance's promotion score (`crm_master -q -l reboot -G`): `None` if it has
/// none.
pub fn promotion_score(env: &Env) -> Result<Option<i64>, OcfError> {
    let mut cmd = Command::new(crm_master_path(env));
    cmd.args(["-q", "-l", "reboot", "-G"])
        .env("OCF_RESOURCE_INSTANCE", &env.instance);
    let out = tools::output(&mut cmd)?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(if out.status.success() {
        text.trim().parse().ok()
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_those_of_ocf_promotion_score() {
        assert_eq!(
            crm_master_args(Some(10000)),
            ["-Q", "-l", "reboot", "-v", "10000"]
        );
        assert_eq!(crm_master_args(None), ["-l", "reboot", "-D"]);
    }

    #[test]
    fn a_shim_in_ha_sbin_dir_is_used_and_gets_the_arguments() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let shim = dir.path().join("crm_master");
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\necho \"$OCF_RESOURCE_INSTANCE $*\" >> {}\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = Env::from_vars([
            ("HA_SBIN_DIR", dir.path().to_str().unwrap()),
            ("OCF_RESOURCE_INSTANCE", "r0"),
        ])
        .unwrap();
        assert_eq!(crm_master_path(&env), shim);
        set_promotion_score(&env, Some(1000)).unwrap();
        set_promotion_score(&env, None).unwrap();
        let calls = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = calls.lines().collect();
        assert_eq!(lines, ["r0 -Q -l reboot -v 1000", "r0 -l reboot -D"]);
    }

    #[test]
    fn without_an_instance_name_it_is_a_configuration_error() {
        let env = Env::from_vars([("HA_SBIN_DIR", "/nonexistent")]).unwrap();
        assert_eq!(
            set_promotion_score(&env, Some(1)).unwrap_err().status,
            crate::Status::ErrConfigured
        );
    }
}
