//! How Hearth starts code:
//!
//! - [`RuntimeCatalog`] maps each Lambda runtime to an interpreter on the
//!   host (every `python3.x` to `/usr/bin/python3`, every `nodejs*` to the
//!   host's `node`, `provided*` to the function's own `bootstrap`);
//! - [`bootstrap`] holds Hearth's embedded Python and Node.js bootstraps,
//!   installs them read-only for sandboxes (`/var/runtime`) and gives the
//!   argv that starts each runtime;
//! - [`api`] is the Lambda Runtime API server each sandbox's runtime talks
//!   to (`next`, `response`, `error`, `init/error`, and Hearth's assignment
//!   endpoint that specialises a runtime-warm sandbox), and the environment
//!   a runtime starts with.

pub mod api;
pub mod bootstrap;
pub mod catalog;

pub use catalog::{CatalogEntry, RuntimeCatalog};
