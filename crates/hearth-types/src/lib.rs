//! The vocabulary every Hearth crate shares: account ids, function names and
//! ARNs, runtimes, limits, and the records that describe a function version.
//!
//! Nothing here does I/O or knows about HTTP. A control-plane request is
//! parsed by `hearth-api` into these types, validated with the functions in
//! [`validate`], and handed to a `hearth_store::Registry`.
//!
//! ```
//! use hearth_types::arn::{FunctionRef, NodeIdentity};
//! let node = NodeIdentity::new("us-east-1");
//! let r = FunctionRef::parse("hello:prod", &node, "000000000000").unwrap();
//! assert_eq!(r.name.as_str(), "hello");
//! assert_eq!(r.qualifier.as_deref(), Some("prod"));
//! ```

pub mod arn;
pub mod capacity;
pub mod error;
pub mod events;
pub mod function;
pub mod limits;
pub mod runtime;
pub mod validate;

pub use error::{ErrorKind, LambdaError};
