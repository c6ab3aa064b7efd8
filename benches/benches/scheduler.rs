//! clusterd's scheduler on the benchmark shape: 1,000 resources × 32 nodes × 5,000
//! constraints (locations, colocation chains, orders), half the resources already running.
//! Goal: ≤ 50 ms per transition. `benches/scripts/scheduler-vs-crm-simulate` runs this and
//! times Pacemaker's `crm_simulate` on the same CIB.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn scheduler(c: &mut Criterion) {
    let mut g = c.benchmark_group("scheduler");
    g.sample_size(20);
    for (resources, nodes, constraints) in [(100, 8, 500), (1000, 32, 5000)] {
        let (cib, status) = clusterd_core::synth::large(resources, nodes, constraints, 42);
        g.bench_function(
            format!("{resources}rsc_{nodes}nodes_{constraints}cons"),
            |b| {
                b.iter(|| {
                    black_box(clusterd_core::sched::schedule(
                        black_box(&cib),
                        black_box(&status),
                        1000,
                    ))
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, scheduler);
criterion_main!(benches);
