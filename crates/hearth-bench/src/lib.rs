//! Hearth's benchmark toolkit, used by `hearth bench`.
//!
//! - [`report`]: the report model every scenario writes into, rendered as
//!   `report.json` and `report.md`;
//! - [`charts`]: SVG charts (latency CDFs, policy trade-off curves);
//! - [`replay`]: the policy-replay suite over a synthetic or Azure trace;
//! - [`baselines`]: peer baselines measured on this machine (fork+exec,
//!   bubblewrap, crun) and Hearth's Runtime API round trip alone.

pub mod baselines;
pub mod charts;
pub mod replay;
pub mod report;
