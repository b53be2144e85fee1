//! The microVM guest image, embedded: Hearth's guest runtime (`guest/`)
//! linked with its kernel (`kernels/hearth-kernel`), built freestanding by
//! this crate's build script.
//!
//! ```
//! assert_eq!(&hearth_guest_image::ELF[..4], b"\x7fELF");
//! assert_eq!(hearth_guest_image::ID.len(), 64);
//! ```

include!(concat!(env!("OUT_DIR"), "/image.rs"));

/// The engine inside the image, as snapshots are keyed on it.
pub use hearth_wasi::WASMI_ENGINE_ID as ENGINE;
