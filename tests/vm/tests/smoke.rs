use hearth_vm_tests::*;
use hearth_vmm::guest::{Ended, Runner};

#[test]
fn echo_wat_once() {
    let Some(kvm) = kvm() else { return };
    let runner = Runner::for_this_thread().unwrap();
    let f = run_once(&kvm, &runner, &wat(ECHO_WAT), b"{\"hello\":1}").unwrap();
    assert_eq!(f.ended, Ended::Exited(0));
    assert_eq!(f.stdout, b"{\"hello\":1}");
    assert_eq!(f.stderr, b"echo: done\n");
}
