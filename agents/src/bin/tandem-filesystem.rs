//! `ocf:tandem:Filesystem` — see `tandem_agents::filesystem`.
fn main() -> std::process::ExitCode {
    ocf::run(&tandem_agents::filesystem::FilesystemAgent)
}
