//! Hearth's guest runtime: what runs in ring 3 inside a microVM.
//!
//! The VMM enters `_start` (in `hearth-kernel`) with the mailbox holding
//! `BootInfo` and a `Boot` entry. From there, one straight line:
//!
//! 1. Set up the heap, the clocks, the random generator and the engine;
//!    ring `BaseReady`. The VMM takes the **base snapshot** here.
//! 2. On `Load`: read the module from the module window and the config
//!    blob, then let the engine run it. Its first read of stdin rings
//!    `StdinWait`: the VMM takes the **function snapshot** here, and every
//!    later invocation resumes from this point with an `Invoke` entry.
//! 3. When the module ends, write the `Report` and ring `Done`: one exit,
//!    carrying stdout, stderr and the status.
//!
//! At every entry the runtime re-anchors its clocks to the host's and
//! reseeds its random generator from the entry's fresh entropy, so VMs
//! restored from one snapshot never share a random stream.
#![no_std]
#![no_main]

extern crate alloc;

mod heap;
mod mailbox;
mod mem;
mod platform;
mod wasmtime_platform;

use alloc::vec::Vec;

use hearth_guest_abi::mailbox::{Command, LoadError, Report, Status};
use hearth_guest_abi::{config::Config, layout, Doorbell};
use hearth_wasi::aot::{AotEngine, AOT_MAGIC};
use hearth_wasi::{Engine, LoadFailureKind, Outcome, Wasi, WasmiEngine};

use platform::VmPlatform;

/// Reports `status` with `message`, rings `Done`, and never returns: the
/// VMM resets or discards the VM after `Done`.
fn finish(p: Option<&VmPlatform>, status: Status, exit_code: i32, detail: u32, message: &str) -> ! {
    report(p, status, exit_code, detail, message);
    loop {
        hearth_kernel::ring(Doorbell::Done);
    }
}

/// Writes a report to the mailbox (the end of a run, or the wait at the
/// first stdin read).
fn report(p: Option<&VmPlatform>, status: Status, exit_code: i32, detail: u32, message: &str) {
    let (stdout_len, stderr_len, stderr_dropped) = p.map_or((0, 0, 0), |p| p.output_lengths());
    mailbox::write(|page| {
        Report {
            status,
            exit_code,
            stdout_len,
            stderr_len,
            stderr_dropped,
            detail,
            message,
        }
        .encode(page)
    });
}

fn load_error(p: &VmPlatform, kind: LoadError, message: &str) -> ! {
    finish(Some(p), Status::LoadError, 0, kind as u32, message)
}

/// The runtime's entry, called by the kernel's `_start`.
#[no_mangle]
pub extern "C" fn hearth_guest_main() -> ! {
    let page = mailbox::read();
    let Ok(boot) = hearth_guest_abi::mailbox::BootInfo::decode(&page) else {
        finish(
            None,
            Status::Panic,
            0,
            0,
            "the mailbox holds no boot information",
        )
    };
    heap::init(boot.heap);
    let mut platform = VmPlatform::new(boot);
    if let Err(e) = platform.enter(Command::Boot) {
        finish(None, Status::Panic, 0, 0, &e)
    }
    // Both engines are made before the base snapshot, so no VM pays for
    // it: wasmi interprets a module; wasmtime runs one that the host
    // compiled ahead of time (the module window then holds an ELF object).
    let wasmi = WasmiEngine::new();
    let aot = match AotEngine::new() {
        Ok(e) => e,
        Err(e) => finish(Some(&platform), Status::Panic, 0, 0, &e),
    };
    hearth_kernel::console(b"hearth-guest: booted, engines ");
    hearth_kernel::console(wasmi.id().as_bytes());
    hearth_kernel::console(b", ");
    hearth_kernel::console(aot.id().as_bytes());
    hearth_kernel::console(b"\n");

    hearth_kernel::ring(Doorbell::BaseReady);
    let load = match platform.enter(Command::Load) {
        Ok(e) => e,
        Err(e) => finish(Some(&platform), Status::Panic, 0, 0, &e),
    };
    if load.module_len > layout::MODULE_WINDOW_SIZE {
        load_error(
            &platform,
            LoadError::TooLarge,
            "the module is larger than the module window",
        );
    }
    if load.config_len > layout::CONFIG_CAP {
        load_error(
            &platform,
            LoadError::Config,
            "the config blob is larger than its region",
        );
    }
    // SAFETY: the VMM maps the module read-only at the module window for at
    // least `module_len` bytes (checked against the window above) before
    // `Load`, and never changes it while the VM lives.
    let module: &[u8] = unsafe {
        core::slice::from_raw_parts(
            layout::MODULE_WINDOW_GPA as *const u8,
            load.module_len as usize,
        )
    };
    // SAFETY: the config region is guest RAM reserved for the blob; the VMM
    // wrote `config_len` (checked above) bytes there before `Load`.
    let blob: &[u8] = unsafe {
        core::slice::from_raw_parts(layout::CONFIG_GPA as *const u8, load.config_len as usize)
    };
    let config = match Config::decode(blob) {
        Ok(c) => c,
        Err(e) => load_error(&platform, LoadError::Config, &alloc::format!("{e}")),
    };
    let args: Vec<&[u8]> = config.args().collect();
    let env: Vec<&[u8]> = config.env().collect();
    let mut wasi = Wasi::new(platform, &args, &env);
    // The file images the VMM mapped into the files window, mounted where
    // the config blob says.
    for m in config.mounts() {
        let m = match m {
            Ok(m) => m,
            Err(e) => load_error(wasi.platform(), LoadError::Config, &alloc::format!("{e}")),
        };
        let window = layout::FILES_WINDOW_GPA..layout::FILES_WINDOW_GPA + layout::FILES_WINDOW_SIZE;
        if !window.contains(&m.gpa) || m.len > window.end - m.gpa {
            load_error(
                wasi.platform(),
                LoadError::Config,
                "a mount lies outside the files window",
            );
        }
        // SAFETY: the VMM maps every mounted image read-only at its address
        // (checked inside the window above) before `Load`, and never
        // changes or removes it while the VM serves this function.
        let image: &'static [u8] =
            unsafe { core::slice::from_raw_parts(m.gpa as *const u8, m.len as usize) };
        if let Err(e) = wasi.mount(m.path, image) {
            load_error(wasi.platform(), LoadError::Config, &e.0);
        }
    }
    let (outcome, wasi) = if module.starts_with(AOT_MAGIC) {
        aot.run(module, wasi)
    } else {
        wasmi.run(module, wasi)
    };
    let p = wasi.platform();
    match outcome {
        Outcome::Exited(code) => finish(Some(p), Status::Exited, code, 0, ""),
        Outcome::Trap(msg) => finish(Some(p), Status::Trap, 0, 0, &msg),
        Outcome::OutOfMemory => finish(
            Some(p),
            Status::OutOfMemory,
            0,
            0,
            "the module needs more memory than the VM has",
        ),
        Outcome::OutputTooLarge => finish(
            Some(p),
            Status::OutputTooLarge,
            0,
            0,
            "stdout exceeded 6 MB",
        ),
        Outcome::Load(f) => {
            let kind = match f.kind {
                LoadFailureKind::Invalid => LoadError::Invalid,
                LoadFailureKind::MissingImport => LoadError::MissingImport,
                LoadFailureKind::Instantiate => LoadError::Instantiate,
                LoadFailureKind::NoStart => LoadError::NoStart,
            };
            load_error(p, kind, &f.message)
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    // The heap may be what failed: format into a fixed buffer.
    let mut msg = heapless_message::Message::new();
    if heap::exhausted() {
        finish(
            None,
            Status::OutOfMemory,
            0,
            0,
            "the guest runtime ran out of heap",
        )
    }
    let _ = write!(msg, "guest runtime panic: {info}");
    finish(None, Status::Panic, 0, 0, msg.as_str())
}

/// A fixed-size text buffer for the panic message.
mod heapless_message {
    /// Up to 1 KiB of text; what does not fit is cut.
    pub struct Message {
        buf: [u8; 1024],
        len: usize,
    }

    impl Message {
        pub fn new() -> Message {
            Message {
                buf: [0; 1024],
                len: 0,
            }
        }

        pub fn as_str(&self) -> &str {
            match core::str::from_utf8(&self.buf[..self.len]) {
                Ok(s) => s,
                Err(e) => core::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or(""),
            }
        }
    }

    impl core::fmt::Write for Message {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let n = s.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
}
