//! `ledger-monitor`: follows ledger logs through the tlog-tiles read path only, re-verifies
//! every checkpoint, rebuilds every tree from its entries, compares every tile, checks
//! witnesses' views for a split, and raises alerts (specs/monitor.md).

pub mod alert;
pub mod config;
pub mod facts;
pub mod fetch;
pub mod follow;
pub mod metrics;
pub mod pipeline;
pub mod state;
pub mod tree;
pub mod versions;
