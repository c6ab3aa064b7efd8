//! replicatord and replicatorctl: the I/O driver around `replicator-core`.
