//! `replicatorctl [--state-dir DIR] [--config FILE] [--node NAME] VERB RES`: drbdadm's verbs for
//! replicatord. Exit codes: docs/replicator.md.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = replicator::ctl::Cli::parse();
    match replicator::ctl::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("replicatorctl: error: {}", f.message);
            f.exit.into()
        }
    }
}
