//! Benchmarks live in `benches/` (criterion) and `benches/scripts/` (whole-system comparisons).
