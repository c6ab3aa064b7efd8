//! The NBD protocol (`doc/proto.md` of the NetworkBlockDevice project): a pure codec for the
//! handshake and transmission phases, and a tokio server over a block backend.
