//! Link the guest freestanding: no C start files, no libc, static, at the
//! image base the ABI names. The flags that must reach every crate
//! (`-C relocation-model=static`) come from the image build
//! (kernels/image/build.rs), which is the one way this binary is built.
fn main() {
    let base = format!(
        "-Wl,--image-base={:#x}",
        hearth_guest_abi::layout::IMAGE_BASE
    );
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        &base,
        "-Wl,-z,max-page-size=4096",
        "-Wl,--build-id=none",
        "-Wl,-e,_start",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
