//! clusterd and clusterctl: the executor, the control socket and the pcs-compatible CLI.
