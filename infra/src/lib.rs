//! AWS topology for wrt (see issue: `wrt infra`).
