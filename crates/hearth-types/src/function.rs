//! The records that describe functions, versions and aliases.
//!
//! A published version is an immutable, fully resolved record (code digest,
//! runtime, limits, environment): pools and sandboxes key on it. `$LATEST`
//! is the one mutable version.

use crate::runtime::Runtime;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a function version runs and with which limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionConfig {
    pub runtime: Runtime,
    pub handler: String,
    pub role: String,
    pub description: String,
    pub memory_size: u32,
    pub timeout: u32,
    /// `None` for a function created without `Environment` (AWS then omits
    /// the field); `Some` once set, even to no variables.
    #[serde(default)]
    pub environment: Option<BTreeMap<String, String>>,
    pub ephemeral_storage_mb: u32,
    pub architectures: Vec<String>,
    /// The layer versions merged under `/opt`, in order (a later one's files
    /// win), each with the content it had when the function named it: a
    /// deleted layer version stays usable by the functions that name it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerRef>,
    /// `DeadLetterConfig.TargetArn`: the SQS queue an asynchronous event
    /// goes to when every attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_target: Option<String>,
}

/// A layer version as a function configuration names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// `arn:aws:lambda:<region>:<account>:layer:<name>:<version>`.
    pub arn: String,
    /// Its content in the code store.
    pub code: CodeRef,
}

/// A code package in the content-addressed store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRef {
    /// Lower-case hex SHA-256 of the zip as uploaded: the blob's name.
    pub sha256_hex: String,
    /// Size of the zip in bytes (Lambda's `CodeSize`).
    pub size: u64,
    /// Total size of the unpacked files.
    pub unzipped_size: u64,
}

impl CodeRef {
    /// Lambda's `CodeSha256`: the base64 of the digest bytes.
    pub fn code_sha256(&self) -> String {
        use base64::Engine;
        let bytes = hex::decode(&self.sha256_hex).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

/// Lambda's `State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FunctionState {
    Pending,
    Active,
    Inactive,
    Failed,
}

impl FunctionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Active => "Active",
            Self::Inactive => "Inactive",
            Self::Failed => "Failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Pending" => Self::Pending,
            "Active" => Self::Active,
            "Inactive" => Self::Inactive,
            "Failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// Lambda's `LastUpdateStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateStatus {
    Successful,
    InProgress,
    Failed,
}

impl UpdateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Successful => "Successful",
            Self::InProgress => "InProgress",
            Self::Failed => "Failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Successful" => Self::Successful,
            "InProgress" => Self::InProgress,
            "Failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// Where a version is in its life: `State` plus `LastUpdateStatus`, with reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub state: FunctionState,
    pub state_reason: Option<String>,
    pub state_reason_code: Option<String>,
    /// `None` right after CreateFunction (AWS omits the field then).
    pub last_update_status: Option<UpdateStatus>,
    pub last_update_status_reason: Option<String>,
    pub last_update_status_reason_code: Option<String>,
}

impl Lifecycle {
    /// Just created: `Pending`, being created.
    pub fn creating() -> Self {
        Self {
            state: FunctionState::Pending,
            state_reason: Some("The function is being created.".into()),
            state_reason_code: Some("Creating".into()),
            last_update_status: None,
            last_update_status_reason: None,
            last_update_status_reason_code: None,
        }
    }

    /// Updated: still `Active`, the update `InProgress`.
    pub fn updating() -> Self {
        Self {
            state: FunctionState::Active,
            state_reason: None,
            state_reason_code: None,
            last_update_status: Some(UpdateStatus::InProgress),
            last_update_status_reason: Some("The function is being created.".into()),
            last_update_status_reason_code: Some("Creating".into()),
        }
    }

    /// Code unpacked and validated: `Active`, last update `Successful`.
    pub fn active() -> Self {
        Self {
            state: FunctionState::Active,
            state_reason: None,
            state_reason_code: None,
            last_update_status: Some(UpdateStatus::Successful),
            last_update_status_reason: None,
            last_update_status_reason_code: None,
        }
    }

    /// Whether the activation step still has to run for this version.
    pub fn needs_activation(&self) -> bool {
        self.state == FunctionState::Pending
            || self.last_update_status == Some(UpdateStatus::InProgress)
    }
}

/// One version of a function (`$LATEST` or a published number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub account_id: String,
    pub function_name: String,
    /// `$LATEST` or `"1"`, `"2"`, …
    pub version: String,
    pub config: FunctionConfig,
    pub code: CodeRef,
    /// Milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
    pub revision_id: String,
    pub lifecycle: Lifecycle,
}

/// Where a function's sandboxes run: Hearth's KVM microVMs or Linux
/// process sandboxes (the tag `hearth:isolation`, the node's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A KVM microVM.
    Microvm,
    /// A Linux process sandbox.
    Process,
}

impl Isolation {
    /// The tag that chooses it per function.
    pub const TAG: &'static str = "hearth:isolation";

    /// `microvm` or `process`.
    pub fn parse(s: &str) -> Option<Isolation> {
        match s {
            "microvm" => Some(Isolation::Microvm),
            "process" => Some(Isolation::Process),
            _ => None,
        }
    }

    /// As the tag and `HearthIsolation` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Microvm => "microvm",
            Isolation::Process => "process",
        }
    }
}

/// An alias: a name for a version, optionally with a weighted second version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub account_id: String,
    pub function_name: String,
    pub name: String,
    pub function_version: String,
    pub description: String,
    /// `AdditionalVersionWeights`: version → weight in [0, 1].
    pub routing: BTreeMap<String, f64>,
    pub revision_id: String,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Twelve digits.
    pub id: String,
    pub name: String,
    /// Admin accounts may call `/hearth/v1/` (account management).
    pub admin: bool,
    pub created_ms: i64,
}

/// An access key pair of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    pub account_id: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Per-account counts that GetAccountSettings reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccountUsage {
    /// Sum of the zip sizes of every version of every function.
    pub total_code_size: u64,
    pub function_count: u64,
    /// Sum of reserved concurrency over the account's functions.
    pub reserved_concurrency: u64,
    /// Sum of provisioned concurrency requested for functions *without* a
    /// reservation: what provisioned concurrency takes from the unreserved
    /// pool (a reserved function's provisioned concurrency comes out of its
    /// reservation instead).
    #[serde(default)]
    pub unreserved_provisioned_concurrency: u64,
}

/// Where the allocation of a provisioned concurrency config stands
/// (Lambda's `ProvisionedConcurrencyStatusEnum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProvisionedStatus {
    /// Sandboxes are being made function-warm (or released) to reach the requested count.
    InProgress,
    /// `allocated` has reached `requested`.
    Ready,
    /// The node could not allocate them; `status_reason` says why.
    Failed,
}

impl ProvisionedStatus {
    /// As Lambda prints it: `IN_PROGRESS`, `READY`, `FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Ready => "READY",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "IN_PROGRESS" => Self::InProgress,
            "READY" => Self::Ready,
            "FAILED" => Self::Failed,
            _ => return None,
        })
    }
}

/// Provisioned concurrency of one published version or alias: `requested`
/// function-warm sandboxes in the account's dedicated sub-pool, kept ready
/// before any request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionedConcurrencyConfig {
    pub account_id: String,
    pub function_name: String,
    /// A version number or an alias name, never `$LATEST`.
    pub qualifier: String,
    /// `RequestedProvisionedConcurrentExecutions` (at least 1).
    pub requested: u32,
    /// Function-warm sandboxes that exist for it now
    /// (`AllocatedProvisionedConcurrentExecutions`).
    pub allocated: u32,
    pub status: ProvisionedStatus,
    /// Why allocation failed (`StatusReason`).
    pub status_reason: Option<String>,
    /// When a user last put the config (milliseconds since the Unix epoch);
    /// the supervisor's status reports leave it alone.
    pub last_modified_ms: i64,
}

impl ProvisionedConcurrencyConfig {
    /// Whether the qualifier names an alias rather than a version number.
    pub fn is_alias(&self) -> bool {
        !self.qualifier.bytes().all(|b| b.is_ascii_digit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisioned_status_spells_as_lambda() {
        for s in [
            ProvisionedStatus::InProgress,
            ProvisionedStatus::Ready,
            ProvisionedStatus::Failed,
        ] {
            assert_eq!(ProvisionedStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ProvisionedStatus::InProgress.as_str(), "IN_PROGRESS");
        assert_eq!(ProvisionedStatus::parse("Ready"), None);
    }

    #[test]
    fn code_sha256_is_base64_of_digest() {
        // SHA-256 of the empty string.
        let c = CodeRef {
            sha256_hex: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
            size: 0,
            unzipped_size: 0,
        };
        assert_eq!(
            c.code_sha256(),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
