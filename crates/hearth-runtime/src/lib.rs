//! How Hearth starts code. For now: the [`RuntimeCatalog`], which maps each
//! Lambda runtime to an interpreter on the host (every `python3.x` to
//! `/usr/bin/python3`, every `nodejs*` to the host's `node`, `provided*` to
//! the function's own `bootstrap`). The Runtime API server and the embedded
//! bootstraps join this crate with execution.

pub mod catalog;

pub use catalog::{CatalogEntry, RuntimeCatalog};
