//! What a module may import: WASI preview 1's calls for a command that
//! reads stdin and writes stdout and stderr, and Hearth's two invocation
//! queries. Anything else fails at load time with its name.

/// The WASI preview 1 module name.
pub const WASI: &str = "wasi_snapshot_preview1";
/// Hearth's own import module: the invocation's request id and deadline.
pub const HEARTH: &str = "hearth";

/// A value type in a provided function's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// `i32`.
    I32,
    /// `i64`.
    I64,
}

/// One provided function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provided {
    /// Import module.
    pub module: &'static str,
    /// Import name.
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [Ty],
    /// Result types.
    pub results: &'static [Ty],
}

use Ty::{I32, I64};

const fn wasi(name: &'static str, params: &'static [Ty], results: &'static [Ty]) -> Provided {
    Provided {
        module: WASI,
        name,
        params,
        results,
    }
}

/// Every function the runtime provides.
pub const PROVIDED: &[Provided] = &[
    wasi("args_get", &[I32, I32], &[I32]),
    wasi("args_sizes_get", &[I32, I32], &[I32]),
    wasi("environ_get", &[I32, I32], &[I32]),
    wasi("environ_sizes_get", &[I32, I32], &[I32]),
    wasi("clock_res_get", &[I32, I32], &[I32]),
    wasi("clock_time_get", &[I32, I64, I32], &[I32]),
    wasi("fd_close", &[I32], &[I32]),
    wasi("fd_fdstat_get", &[I32, I32], &[I32]),
    wasi("fd_fdstat_set_flags", &[I32, I32], &[I32]),
    wasi("fd_filestat_get", &[I32, I32], &[I32]),
    wasi("fd_prestat_get", &[I32, I32], &[I32]),
    wasi("fd_prestat_dir_name", &[I32, I32, I32], &[I32]),
    wasi("fd_read", &[I32, I32, I32, I32], &[I32]),
    wasi("fd_seek", &[I32, I64, I32, I32], &[I32]),
    wasi("fd_write", &[I32, I32, I32, I32], &[I32]),
    wasi("poll_oneoff", &[I32, I32, I32, I32], &[I32]),
    wasi("proc_exit", &[I32], &[]),
    wasi("random_get", &[I32, I32], &[I32]),
    wasi("sched_yield", &[], &[I32]),
    Provided {
        module: HEARTH,
        name: "request_id",
        params: &[I32, I32],
        results: &[I32],
    },
    Provided {
        module: HEARTH,
        name: "deadline_ms",
        params: &[],
        results: &[I64],
    },
];

/// The provided function `module.name`, if there is one.
pub fn find(module: &str, name: &str) -> Option<&'static Provided> {
    PROVIDED
        .iter()
        .find(|p| p.module == module && p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        for (i, a) in PROVIDED.iter().enumerate() {
            for b in &PROVIDED[i + 1..] {
                assert!(!(a.module == b.module && a.name == b.name), "{}", a.name);
            }
        }
        assert!(find(WASI, "fd_write").is_some());
        assert!(find(WASI, "path_open").is_none());
    }
}
