//! Concurrency accounting: the account's limit and each function's
//! reserved concurrency, with Lambda's 429 reasons. A [`Slot`] is held for
//! the whole invocation and released on drop.

use hearth_types::{ErrorKind, LambdaError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Default)]
struct Counts {
    /// In-flight invocations per account, of functions without reserved concurrency.
    unreserved: HashMap<String, u32>,
    /// In-flight invocations per (account, function).
    per_function: HashMap<(String, String), u32>,
}

/// In-flight invocations, per account and per function.
#[derive(Debug, Default, Clone)]
pub struct Concurrency {
    counts: Arc<Mutex<Counts>>,
}

/// One admitted invocation.
#[derive(Debug)]
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    account: String,
    function: String,
    reserved: bool,
}

fn throttled(reason: &str) -> LambdaError {
    LambdaError::new(ErrorKind::TooManyRequests, "Rate Exceeded.").with_reason(reason)
}

impl Concurrency {
    /// Admits one invocation or refuses it with Lambda's 429.
    ///
    /// `reserved`: the function's reserved concurrency, if set (it is the
    /// function's own pool, and 0 throttles every invoke). Functions without
    /// a reservation share what the account has left unreserved:
    /// `account_limit - reserved_total`.
    pub fn admit(
        &self,
        account: &str,
        function: &str,
        reserved: Option<u32>,
        account_limit: u32,
        reserved_total: u32,
    ) -> Result<Slot, LambdaError> {
        let mut c = self.counts.lock();
        let key = (account.to_owned(), function.to_owned());
        let in_flight = c.per_function.get(&key).copied().unwrap_or(0);
        match reserved {
            Some(n) if in_flight >= n => {
                return Err(throttled(
                    "ReservedFunctionConcurrentInvocationLimitExceeded",
                ))
            }
            Some(_) => {}
            None => {
                let shared = c.unreserved.get(account).copied().unwrap_or(0);
                if shared >= account_limit.saturating_sub(reserved_total) {
                    return Err(throttled("ConcurrentInvocationLimitExceeded"));
                }
                *c.unreserved.entry(account.to_owned()).or_default() += 1;
            }
        }
        *c.per_function.entry(key).or_default() += 1;
        Ok(Slot {
            counts: self.counts.clone(),
            account: account.to_owned(),
            function: function.to_owned(),
            reserved: reserved.is_some(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        let key = (self.account.clone(), self.function.clone());
        if let Some(n) = c.per_function.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_function.remove(&key);
            }
        }
        if !self.reserved {
            if let Some(n) = c.unreserved.get_mut(&self.account) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.unreserved.remove(&self.account);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_and_account_limits() {
        let c = Concurrency::default();
        let e = c.admit("a", "f", Some(0), 10, 0).unwrap_err();
        assert_eq!(
            e.reason.as_deref(),
            Some("ReservedFunctionConcurrentInvocationLimitExceeded")
        );
        let s1 = c.admit("a", "f", Some(1), 10, 1).unwrap();
        assert!(c.admit("a", "f", Some(1), 10, 1).is_err());
        drop(s1);
        assert!(c.admit("a", "f", Some(1), 10, 1).is_ok());
        let g: Vec<_> = (0..2)
            .map(|_| c.admit("a", "g", None, 3, 1).unwrap())
            .collect();
        let e = c.admit("a", "h", None, 3, 1).unwrap_err();
        assert_eq!(
            e.reason.as_deref(),
            Some("ConcurrentInvocationLimitExceeded")
        );
        assert!(
            c.admit("b", "h", None, 3, 1).is_ok(),
            "accounts are counted apart"
        );
        drop(g);
        assert!(c.admit("a", "h", None, 3, 1).is_ok());
    }
}
