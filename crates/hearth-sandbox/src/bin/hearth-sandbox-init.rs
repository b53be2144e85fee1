//! The sandbox launcher: reads a launch request on stdin and becomes a sandbox.
fn main() {
    hearth_sandbox::linux::init_main()
}
