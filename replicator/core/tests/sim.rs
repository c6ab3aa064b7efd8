//! The seeded simulation (see `replicator_core::sim`). CI runs `TANDEM_SIM_SEEDS` seeds
//! (default below) per protocol, each under the `fencing` policy its seed picks
//! (`replicator_core::sim::fencing_of`: every policy among consecutive seeds); `TANDEM_SIM_SEED=N` replays one seed; `scripts/sim-soak` runs
//! many more. A failure prints its seed and the command that replays it.

use replicator_core::sim::{SimOptions, run};
use replicator_core::types::Protocol;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
    })
}

fn seeds(protocol_salt: u64, default_count: u64) -> Vec<u64> {
    if let Some(seed) = env_u64("TANDEM_SIM_SEED") {
        return vec![seed];
    }
    let count = env_u64("TANDEM_SIM_SEEDS").unwrap_or(default_count);
    let base = env_u64("TANDEM_SIM_BASE").unwrap_or(0);
    (0..count).map(|k| (base + k) * 3 + protocol_salt).collect()
}

fn run_many(protocol: Protocol, salt: u64) {
    let opts = SimOptions {
        protocol: Some(protocol),
        actions: env_u64("TANDEM_SIM_ACTIONS").unwrap_or(1000),
        faults: true,
        fencing: None,
    };
    let mut total = replicator_core::sim::SimReport::default();
    for seed in seeds(salt, 8) {
        let r = run(seed, &opts);
        total.writes_acked += r.writes_acked;
        total.reads_checked += r.reads_checked;
        total.crashes += r.crashes;
        total.resyncs += r.resyncs;
        total.split_brains += r.split_brains;
        total.forced_promotions += r.forced_promotions;
        total.unfenced_promotions += r.unfenced_promotions;
        total.switchovers += r.switchovers;
        total.verifies += r.verifies;
        total.frames_corrupted += r.frames_corrupted;
        total.link_faults += r.link_faults;
        total.flushes_acked += r.flushes_acked;
    }
    eprintln!("protocol {protocol}: {total:?}");
    // The runs must not be vacuous.
    if env_u64("TANDEM_SIM_SEED").is_none() {
        assert!(
            total.writes_acked > 1000 && total.reads_checked > 100,
            "too little client I/O: {total:?}"
        );
        assert!(
            total.crashes > 0 && total.resyncs > 0 && total.link_faults > 0,
            "faults not exercised: {total:?}"
        );
        assert!(
            total.unfenced_promotions > 0 && total.forced_promotions > 0,
            "failover under dont-care (without --force) and under resource-only (with it) not both exercised: {total:?}"
        );
    }
}

#[test]
fn protocol_a() {
    run_many(Protocol::A, 0);
}

#[test]
fn protocol_b() {
    run_many(Protocol::B, 1);
}

#[test]
fn protocol_c() {
    run_many(Protocol::C, 2);
}

/// Without faults the same workload must never need a forced promotion or see a refusal.
#[test]
fn fault_free_runs_stay_in_sync() {
    for seed in seeds(0, 3) {
        let r = run(
            seed,
            &SimOptions {
                protocol: None,
                actions: 1000,
                faults: false,
                fencing: None,
            },
        );
        assert_eq!(
            (
                r.crashes,
                r.forced_promotions,
                r.unfenced_promotions,
                r.split_brains
            ),
            (0, 0, 0, 0),
            "{r:?}"
        );
        assert!(r.writes_acked > 100, "{r:?}");
    }
}
