//! Typed errors for bad input that need no GPU to show.

use ckb_common::{driver_present, require_aligned, Gpu, GpuError};

#[test]
fn opening_a_gpu_without_a_driver_is_a_typed_error() {
    match Gpu::new(0) {
        // This machine has no NVIDIA driver: the error says so, nothing panics.
        Err(GpuError::NoDriver) => assert!(!driver_present()),
        // A GPU host: the driver loads, and GPU 0 opens (or is typed as unsupported).
        Ok(_) | Err(GpuError::UnsupportedDevice { .. }) => assert!(driver_present()),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[test]
fn a_gpu_that_does_not_exist_is_a_typed_error() {
    match Gpu::new(1 << 20) {
        Err(GpuError::NoDriver) => assert!(!driver_present()),
        Err(GpuError::NoSuchDevice { ordinal, .. }) => assert_eq!(ordinal, 1 << 20),
        Err(GpuError::NoDevice) => {}
        other => panic!("expected a typed error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn misaligned_addresses_are_rejected_with_the_alignment_needed() {
    assert!(require_aligned("A", 0x1000, 16).is_ok());
    match require_aligned("A", 0x1002, 16) {
        Err(GpuError::Misaligned { what, address, align }) => {
            assert_eq!((what, address, align), ("A", 0x1002, 16));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn driver_version_is_read_from_the_kernel_module_line() {
    let open = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (dvs-builder@U22)  Thu Oct 30 2025\nGCC version: gcc 12\n";
    assert_eq!(ckb_common::gpu::driver_version_from_proc(open).as_deref(), Some("580.159.04"));
    let proprietary = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n";
    assert_eq!(ckb_common::gpu::driver_version_from_proc(proprietary).as_deref(), Some("550.54.15"));
}
