//! Lambda's limits, as CONTRACTS.md lists them.

pub const FUNCTION_NAME_MAX: usize = 64;
pub const MEMORY_MIN_MB: u32 = 128;
pub const MEMORY_MAX_MB: u32 = 10_240;
pub const MEMORY_DEFAULT_MB: u32 = 128;
pub const TIMEOUT_MIN_S: u32 = 1;
pub const TIMEOUT_MAX_S: u32 = 900;
pub const TIMEOUT_DEFAULT_S: u32 = 3;
/// Total size of the environment variables, keys plus values, as AWS counts it (JSON-encoded map).
pub const ENVIRONMENT_MAX_BYTES: usize = 4 * 1024;
/// A zip uploaded in the request body.
pub const ZIP_MAX_BYTES: u64 = 50 * 1024 * 1024;
/// The unpacked code.
pub const UNZIPPED_MAX_BYTES: u64 = 250 * 1024 * 1024;
/// Layers one function may name.
pub const FUNCTION_LAYERS_MAX: usize = 5;
/// The unpacked code of a function and all its layers together.
pub const UNZIPPED_WITH_LAYERS_MAX_BYTES: u64 = 262_144_000;
/// Layer names (the ARN's last part before the version).
pub const LAYER_NAME_MAX: usize = 64;
/// Entries in one zip; more is treated as a zip bomb.
pub const ZIP_MAX_ENTRIES: usize = 20_000;
/// The JSON request body of CreateFunction/UpdateFunctionCode: the base64 of a 50 MB zip plus slack.
pub const CONTROL_BODY_MAX_BYTES: usize = 70 * 1024 * 1024;
pub const SYNC_PAYLOAD_MAX_BYTES: usize = 6 * 1024 * 1024;
pub const ASYNC_PAYLOAD_MAX_BYTES: usize = 256 * 1024;
pub const DESCRIPTION_MAX: usize = 256;
pub const HANDLER_MAX: usize = 128;
pub const ALIAS_NAME_MAX: usize = 128;
pub const QUALIFIER_MAX: usize = 128;
pub const LIST_MAX_ITEMS: usize = 50;
pub const ACCOUNT_CONCURRENCY_DEFAULT: u32 = 1000;
/// Lambda keeps this much of the account's concurrency unreserved.
pub const UNRESERVED_CONCURRENCY_MIN: u32 = 100;
/// What GetAccountSettings reports as the total code storage (75 GB).
pub const TOTAL_CODE_SIZE_LIMIT: u64 = 80_530_636_800;
