//! Authentication of API requests.
//!
//! [`sigv4`] verifies AWS Signature Version 4 (the `Authorization:
//! AWS4-HMAC-SHA256 …` header, and the presigned `X-Amz-Signature` query
//! form) the way Lambda does, so boto3, the AWS CLI and the AWS SDKs can talk
//! to Hearth unchanged. Looking up the secret for an access key is the
//! caller's job: [`parse`] needs no secret, [`verify`] does.

pub mod sigv4;

pub use sigv4::{
    parse, verify, AuthError, ParsedAuth, SigV4Request, SigningKeyCache, ALGORITHM, MAX_CLOCK_SKEW,
    MAX_PRESIGNED_EXPIRES_SECS, SIGNATURE_MISMATCH_MESSAGE,
};
