//! Pure core of clusterd: the CIB model, pcs command parsing, Pacemaker XML import/export, the
//! linter and the scheduler. No I/O: the daemon crate (`clusterd/daemon`) runs agents and sockets.
