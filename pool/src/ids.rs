//! Who and what: accounts, function versions, sandboxes.

use std::fmt;
use std::sync::Arc;

/// A tenant. Cheap to clone (shared string): it is a key in every pool index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(Arc<str>);

impl AccountId {
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a function-warm sandbox is warm *for*: one account's function at one
/// immutable version. The supervisor folds anything else that must match
/// (e.g. a `$LATEST` revision id) into `version`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FunctionVersion {
    account: AccountId,
    name: Arc<str>,
    version: Arc<str>,
}

impl FunctionVersion {
    pub fn new(account: AccountId, name: impl AsRef<str>, version: impl AsRef<str>) -> Self {
        Self {
            account,
            name: Arc::from(name.as_ref()),
            version: Arc::from(version.as_ref()),
        }
    }

    pub fn account(&self) -> &AccountId {
        &self.account
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }
}

impl fmt::Display for FunctionVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.account, self.name, self.version)
    }
}

/// A sandbox, as the supervisor numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SandboxId(pub u64);

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sb-{}", self.0)
    }
}
