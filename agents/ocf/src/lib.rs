//! A small OCF 1.1 resource-agent library shared by every Tandem agent.
