//! ocf:tandem:mail: the mail suite with all its state on the replicated filesystem.
