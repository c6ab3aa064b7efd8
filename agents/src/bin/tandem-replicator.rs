//! `ocf:tandem:replicator` — see `tandem_agents::replicator`.
fn main() -> std::process::ExitCode {
    ocf::run(&tandem_agents::replicator::ReplicatorAgent)
}
