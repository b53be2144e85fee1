//! Policy replay: run a trace through the capacity logic on a simulated
//! clock and measure what POLICIES.md calls "better" — cold starts (count,
//! percentage, and the 75th percentile of per-function cold-start rate) at
//! a cost in idle memory-time (GB·s held by sandboxes not running code).
//!
//! The replayer drives the same [`Inventory`](crate::inventory::Inventory),
//! [`PoolManager`](crate::manager::PoolManager), keep-alive policy and sizer
//! as the supervisor does; only the sandboxes are imaginary. Traces come
//! from [`synthetic_trace`] (default) or the Azure 2019 files
//! ([`AzureTraceBuilder`]).

mod azure;
mod sim;
mod synthetic;
mod trace;

pub use azure::{AzureOptions, AzureTraceBuilder, TraceError};
pub use sim::{replay, ReplayConfig, ReplayReport};
pub use synthetic::{synthetic_trace, SyntheticConfig};
pub use trace::{Trace, TraceFunction, TraceInvocation, Trigger};
