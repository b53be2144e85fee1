//! The WASI calls that take the module's memory, listed once for every
//! engine: each engine's linker passes its own `$def` macro, which wraps
//! `|wasi, memory, args…| body` in that engine's host-function type.

/// Calls `$def!($linker, name, |w, m, args…| body)` for each memory-taking
/// WASI call (the rest — `proc_exit`, `sched_yield`, Hearth's queries —
/// each engine links itself).
macro_rules! wasi_bindings {
    ($def:ident, $linker:ident) => {
        $def!($linker, "args_get", |w, m, a: u32, b: u32| w
            .args_get(m, a, b));
        $def!($linker, "args_sizes_get", |w, m, a: u32, b: u32| w
            .args_sizes_get(m, a, b));
        $def!($linker, "environ_get", |w, m, a: u32, b: u32| w
            .environ_get(m, a, b));
        $def!($linker, "environ_sizes_get", |w, m, a: u32, b: u32| w
            .environ_sizes_get(m, a, b));
        $def!($linker, "clock_res_get", |w, m, id: i32, out: u32| w
            .clock_res_get(m, id, out));
        $def!(
            $linker,
            "clock_time_get",
            |w, m, id: i32, p: i64, out: u32| w.clock_time_get(m, id, p, out)
        );
        $def!($linker, "fd_close", |w, _m, fd: i32| w.fd_close(fd));
        $def!($linker, "fd_fdstat_get", |w, m, fd: i32, out: u32| w
            .fd_fdstat_get(m, fd, out));
        $def!($linker, "fd_fdstat_set_flags", |w, _m, fd: i32, f: i32| w
            .fd_fdstat_set_flags(fd, f));
        $def!($linker, "fd_filestat_get", |w, m, fd: i32, out: u32| w
            .fd_filestat_get(m, fd, out));
        $def!($linker, "fd_prestat_get", |w, m, fd: i32, out: u32| w
            .fd_prestat_get(m, fd, out));
        $def!(
            $linker,
            "fd_prestat_dir_name",
            |w, m, fd: i32, p: u32, l: u32| w.fd_prestat_dir_name(m, fd, p, l)
        );
        $def!($linker, "fd_read", |w,
                                   m,
                                   fd: i32,
                                   iovs: u32,
                                   n: u32,
                                   out: u32| w
            .fd_read(m, fd, iovs, n, out));
        $def!($linker, "fd_seek", |w,
                                   m,
                                   fd: i32,
                                   o: i64,
                                   wh: i32,
                                   out: u32| w
            .fd_seek(m, fd, o, wh, out));
        $def!($linker, "fd_pread", |w,
                                    m,
                                    fd: i32,
                                    iovs: u32,
                                    n: u32,
                                    at: i64,
                                    out: u32| w
            .file_call(fd, |fs| fs.read(
                m,
                fd,
                iovs,
                n,
                Some(at as u64),
                out
            )));
        $def!(
            $linker,
            "fd_pwrite",
            |w, m, fd: i32, iovs: u32, n: u32, at: i64, out: u32| w.file_call(fd, |fs| fs.write(
                m,
                fd,
                iovs,
                n,
                Some(at as u64),
                out
            ))
        );
        $def!($linker, "fd_tell", |w, m, fd: i32, out: u32| w
            .file_call(fd, |fs| fs.tell(m, fd, out)));
        $def!(
            $linker,
            "fd_readdir",
            |w, m, fd: i32, buf: u32, len: u32, cookie: i64, out: u32| w
                .file_call(fd, |fs| fs.readdir(m, fd, buf, len, cookie as u64, out))
        );
        $def!(
            $linker,
            "fd_filestat_set_size",
            |w, _m, fd: i32, size: i64| w.file_call(fd, |fs| fs.set_size(fd, size))
        );
        $def!(
            $linker,
            "fd_filestat_set_times",
            |w, _m, fd: i32, _a: i64, _mt: i64, _f: i32| w.file_call(fd, |fs| if fs.owns(fd) {
                0
            } else {
                $crate::fs::e::BADF
            })
        );
        $def!($linker, "fd_advise", |w,
                                     _m,
                                     fd: i32,
                                     _o: i64,
                                     _l: i64,
                                     _a: i32| {
            w.file_call(fd, |fs| if fs.owns(fd) { 0 } else { $crate::fs::e::BADF })
        });
        $def!($linker, "fd_sync", |w, _m, fd: i32| w.file_call(fd, |fs| {
            if fs.owns(fd) {
                0
            } else {
                $crate::fs::e::BADF
            }
        }));
        $def!($linker, "fd_datasync", |w, _m, fd: i32| w.file_call(
            fd,
            |fs| if fs.owns(fd) { 0 } else { $crate::fs::e::BADF }
        ));
        $def!(
            $linker,
            "path_open",
            |w,
             m,
             fd: i32,
             _df: i32,
             p: u32,
             l: u32,
             of: i32,
             rb: i64,
             _ri: i64,
             ff: i32,
             out: u32| Ok(w.fs().path_open(m, fd, p, l, of, rb, ff, out))
        );
        $def!(
            $linker,
            "path_filestat_get",
            |w, m, fd: i32, _f: i32, p: u32, l: u32, out: u32| Ok(w
                .fs()
                .path_filestat(m, fd, p, l, out))
        );
        $def!(
            $linker,
            "path_filestat_set_times",
            |w, m, fd: i32, _f: i32, p: u32, l: u32, _a: i64, _mt: i64, _ff: i32| Ok(w
                .fs()
                .path_exists(m, fd, p, l))
        );
        $def!(
            $linker,
            "path_create_directory",
            |w, m, fd: i32, p: u32, l: u32| Ok(w.fs().mkdir(m, fd, p, l))
        );
        $def!(
            $linker,
            "path_unlink_file",
            |w, m, fd: i32, p: u32, l: u32| Ok(w.fs().unlink(m, fd, p, l, false))
        );
        $def!(
            $linker,
            "path_remove_directory",
            |w, m, fd: i32, p: u32, l: u32| Ok(w.fs().unlink(m, fd, p, l, true))
        );
        $def!(
            $linker,
            "path_rename",
            |w, m, fd: i32, o: u32, ol: u32, nfd: i32, n: u32, nl: u32| Ok(w
                .fs()
                .rename(m, fd, o, ol, nfd, n, nl))
        );
        $def!(
            $linker,
            "path_readlink",
            |w, m, fd: i32, p: u32, l: u32, _b: u32, _bl: u32, _out: u32| Ok(w
                .fs()
                .readlink(m, fd, p, l))
        );
        $def!(
            $linker,
            "path_link",
            |_w, _m, _ofd: i32, _of: i32, _o: u32, _ol: u32, _nfd: i32, _n: u32, _nl: u32| Ok(
                $crate::fs::e::PERM
            )
        );
        $def!(
            $linker,
            "path_symlink",
            |_w, _m, _o: u32, _ol: u32, _fd: i32, _n: u32, _nl: u32| Ok($crate::fs::e::PERM)
        );
        $def!(
            $linker,
            "sock_accept",
            |_w, _m, _fd: i32, _f: i32, _out: u32| Ok($crate::fs::e::NOTSOCK)
        );
        $def!(
            $linker,
            "sock_recv",
            |_w, _m, _fd: i32, _d: u32, _dl: u32, _f: i32, _o: u32, _of: u32| Ok(
                $crate::fs::e::NOTSOCK
            )
        );
        $def!($linker, "sock_send", |_w,
                                     _m,
                                     _fd: i32,
                                     _d: u32,
                                     _dl: u32,
                                     _f: i32,
                                     _o: u32| {
            Ok($crate::fs::e::NOTSOCK)
        });
        $def!($linker, "sock_shutdown", |_w, _m, _fd: i32, _h: i32| Ok(
            $crate::fs::e::NOTSOCK
        ));
        $def!($linker, "fd_write", |w,
                                    m,
                                    fd: i32,
                                    iovs: u32,
                                    n: u32,
                                    out: u32| w
            .fd_write(m, fd, iovs, n, out));
        $def!(
            $linker,
            "poll_oneoff",
            |w, m, s: u32, e: u32, n: u32, out: u32| w.poll_oneoff(m, s, e, n, out)
        );
        $def!($linker, "random_get", |w, m, buf: u32, len: u32| w
            .random_get(m, buf, len));
    };
}

pub(crate) use wasi_bindings;
