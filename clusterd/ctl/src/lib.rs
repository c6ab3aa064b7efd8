//! clusterctl: pcs-compatible command line for clusterd.
