//! `ocf:tandem:IPaddr` — see `tandem_agents::ipaddr`.
fn main() -> std::process::ExitCode {
    ocf::run(&tandem_agents::ipaddr::IpAddrAgent)
}
