//! clusterd: the resource manager daemon — executor of OCF agents, control socket, transitions.
