//! Writes the benchmark configuration as Pacemaker XML and times our scheduler once:
//! `cargo run --release -p clusterd-core --example big -- OUT.xml [RESOURCES NODES CONSTRAINTS]`.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = args
        .get(1)
        .expect("usage: big OUT.xml [RESOURCES NODES CONSTRAINTS]");
    let num = |i: usize, d: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    let (cib, status) = clusterd_core::synth::large(num(2, 1000), num(3, 32), num(4, 5000), 42);
    std::fs::write(out, clusterd_core::xml::export(&cib, Some(&status))).expect("write");
    let loops: usize = std::env::var("LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for _ in 1..loops {
        std::hint::black_box(clusterd_core::sched::schedule(&cib, &status, 1000));
    }
    let t0 = std::time::Instant::now();
    let t = clusterd_core::sched::schedule(&cib, &status, 1000);
    let dt = t0.elapsed();
    let t1 = std::time::Instant::now();
    let mut s = clusterd_core::sched::Sched::build(&cib, &status, 1000);
    let b = t1.elapsed();
    s.assign_all();
    let a = t1.elapsed();
    let _ = s.build_transition();
    let c = t1.elapsed();
    println!(
        "phases: build {:?}, assign {:?}, actions {:?}",
        b,
        a - b,
        c - a
    );
    println!(
        "tandem scheduler: {} actions, {} placements in {:.1} ms",
        t.actions.len(),
        t.placements.len(),
        dt.as_secs_f64() * 1000.0
    );
}
