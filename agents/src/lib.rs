//! Tandem's OCF resource agents.
