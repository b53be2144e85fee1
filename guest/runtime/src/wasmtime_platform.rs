//! What wasmtime's `no_std` runtime asks of its platform: two
//! thread-local pointers. The guest has one thread, so they are plain
//! statics. (Without virtual memory and signal handlers, this is all: see
//! `hearth_wasi::aot`.)

use core::sync::atomic::{AtomicPtr, Ordering};

static SLOTS: [AtomicPtr<u8>; 2] = [
    AtomicPtr::new(core::ptr::null_mut()),
    AtomicPtr::new(core::ptr::null_mut()),
];

/// wasmtime's `wasmtime_tls_get`: slot 0 holds the current activation,
/// slot 1 the store's; any other slot reads null.
#[no_mangle]
pub extern "C" fn wasmtime_tls_get(slot: usize) -> *mut u8 {
    SLOTS
        .get(slot)
        .map_or(core::ptr::null_mut(), |s| s.load(Ordering::Relaxed))
}

/// wasmtime's `wasmtime_tls_set`.
#[no_mangle]
pub extern "C" fn wasmtime_tls_set(slot: usize, ptr: *mut u8) {
    if let Some(s) = SLOTS.get(slot) {
        s.store(ptr, Ordering::Relaxed);
    }
}
