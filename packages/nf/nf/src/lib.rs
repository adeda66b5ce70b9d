//! The Galette NF authoring API.
//!
//! An NF is a `#![no_std]` crate with a `#[maps]` struct, an `Action` enum and
//! `pub fn packet(pkt: &mut Packet, maps: &Maps) -> Action`. The same source is built three
//! ways, selected with `--cfg` by nf-build (authors never set these):
//! - `nf_bpf`: the XDP backend (BPF helpers by id, maps are symbols from the C shim);
//! - `nf_native`: native libraries for AF_XDP workers (libbpf `bpf_map_*_elem` on map fds);
//! - neither (plain `cargo test`): an in-memory backend for unit tests, using std.
#![no_std]
#![allow(clippy::len_without_is_empty)]

#[cfg(not(any(nf_bpf, nf_native)))]
extern crate std;

pub use nf_macros::maps;

mod lpm;
pub use lpm::{LpmKey, LpmKeyV4, LpmKeyV6};

#[cfg(nf_bpf)]
mod bpf;
#[cfg(nf_bpf)]
use bpf as backend;

#[cfg(nf_native)]
mod native;
#[cfg(nf_native)]
use native as backend;

#[cfg(not(any(nf_bpf, nf_native)))]
mod memory;
#[cfg(not(any(nf_bpf, nf_native)))]
use memory as backend;

pub use backend::{Map, Packet, random_u32, repeat, timestamp_ns};
#[cfg(not(any(nf_bpf, nf_native)))]
pub use memory::set_test_clock_ns;

/// A failed map or packet operation: a negative errno (e.g. -7 E2BIG when a map is full,
/// -2 ENOENT when removing a missing key, -22 EINVAL for an impossible head/tail adjustment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error(pub i32);

pub type Result<T> = core::result::Result<T, Error>;

/// Hides a value from the optimiser so work on it is not removed (benchmark NFs).
#[inline(always)]
pub fn black_box<T>(x: T) -> T {
    core::hint::black_box(x)
}

#[doc(hidden)]
pub mod __private {
    pub use crate::backend::MapHandle;
    #[cfg(nf_bpf)]
    pub use crate::bpf::XdpMd;
    #[cfg(nf_native)]
    pub use crate::native::GalettePkt;
}
