//! XDP backend: runs inside the generated `galette_nf` program.
use crate::{Error, Result};
use core::marker::PhantomData;

/// The kernel's `struct xdp_md`.
#[repr(C)]
pub struct XdpMd {
    pub data: u32,
    pub data_end: u32,
    pub data_meta: u32,
    pub ingress_ifindex: u32,
    pub rx_queue_index: u32,
    pub egress_ifindex: u32,
}

/// A map's address in the program (`&nf_map_<field>`, relocated by libbpf).
pub type MapHandle = *const u8;

// BPF helpers are called by id, as libbpf's bpf_helper_defs.h does.
const MAP_LOOKUP_ELEM: usize = 1;
const MAP_UPDATE_ELEM: usize = 2;
const MAP_DELETE_ELEM: usize = 3;
const KTIME_GET_NS: usize = 5;
const GET_PRANDOM_U32: usize = 7;
const XDP_ADJUST_HEAD: usize = 44;
const XDP_ADJUST_TAIL: usize = 65;
const LOOP: usize = 181;

/// Packets beyond this offset cannot exist (XDP frames fit a page); bounding offsets lets
/// the verifier accept pointer arithmetic with runtime values.
const MAX_OFFSET: usize = 0xffff;

/// The frame being processed.
pub struct Packet {
    ctx: *mut XdpMd,
}

impl Packet {
    #[doc(hidden)]
    #[inline(always)]
    pub unsafe fn __from_xdp(ctx: *mut XdpMd) -> Self {
        Packet { ctx }
    }

    /// Frame start and end as pointers, re-read every time (adjust_head/adjust_tail move
    /// them). Pointers, not integers: LLVM would narrow integer compares of these
    /// zero-extended u32 fields to 32-bit jumps, from which the verifier learns no bounds.
    #[inline(always)]
    fn bounds(&self) -> (*mut u8, *mut u8) {
        unsafe { ((*self.ctx).data as usize as *mut u8, (*self.ctx).data_end as usize as *mut u8) }
    }

    /// Length of the frame in bytes.
    #[inline(always)]
    pub fn len(&self) -> usize {
        let (start, end) = self.bounds();
        // Opaque to LLVM: otherwise it folds `x + (end - start)` into `(x - start) + end`,
        // scalar minus packet pointer, which the verifier rejects.
        core::hint::black_box((end as usize).wrapping_sub(start as usize))
    }

    /// The first `n` bytes, or None if the frame is shorter.
    #[inline(always)]
    pub fn slice(&mut self, n: usize) -> Option<&mut [u8]> {
        self.slice_from(0, n)
    }

    /// `n` bytes starting at `off`, or None if they are not all inside the frame. The check
    /// is made on the final pointer against the frame end, which is what the verifier needs
    /// to accept a runtime `off`.
    #[inline(always)]
    pub fn slice_from(&mut self, off: usize, n: usize) -> Option<&mut [u8]> {
        if off > MAX_OFFSET || n > MAX_OFFSET {
            return None;
        }
        let (start, end) = self.bounds();
        let p = start.wrapping_add(off);
        if p.wrapping_add(n) > end {
            return None;
        }
        Some(unsafe { core::slice::from_raw_parts_mut(p, n) })
    }

    /// Grows (negative `delta`) or shrinks (positive) the frame at its head.
    #[inline(always)]
    pub fn adjust_head(&mut self, delta: i32) -> Result<()> {
        let f: unsafe extern "C" fn(*mut XdpMd, i32) -> i64 = unsafe { core::mem::transmute(XDP_ADJUST_HEAD) };
        match unsafe { f(self.ctx, delta) } {
            0 => Ok(()),
            e => Err(Error(e as i32)),
        }
    }

    /// Grows (positive `delta`) or shrinks (negative) the frame at its tail.
    #[inline(always)]
    pub fn adjust_tail(&mut self, delta: i32) -> Result<()> {
        let f: unsafe extern "C" fn(*mut XdpMd, i32) -> i64 = unsafe { core::mem::transmute(XDP_ADJUST_TAIL) };
        match unsafe { f(self.ctx, delta) } {
            0 => Ok(()),
            e => Err(Error(e as i32)),
        }
    }
}

/// A BPF map shared by every instance of the NF and its userland twin.
pub struct Map<K, V> {
    def: MapHandle,
    _types: PhantomData<(K, V)>,
}

impl<K: Copy + 'static, V: Copy + 'static> Map<K, V> {
    #[doc(hidden)]
    #[inline(always)]
    pub unsafe fn __bind(def: MapHandle) -> Self {
        Map { def, _types: PhantomData }
    }

    #[doc(hidden)]
    #[inline(always)]
    pub fn __in_memory() -> Self {
        Map { def: core::ptr::null(), _types: PhantomData }
    }

    /// A copy of the value stored under `key`.
    #[inline(always)]
    pub fn get(&self, key: &K) -> Option<V> {
        let f: unsafe extern "C" fn(MapHandle, *const K) -> *const V = unsafe { core::mem::transmute(MAP_LOOKUP_ELEM) };
        let p = unsafe { f(self.def, key) };
        if p.is_null() { None } else { Some(unsafe { core::ptr::read_volatile(p) }) }
    }

    /// Inserts or replaces the value under `key`.
    #[inline(always)]
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        let f: unsafe extern "C" fn(MapHandle, *const K, *const V, u64) -> i64 =
            unsafe { core::mem::transmute(MAP_UPDATE_ELEM) };
        match unsafe { f(self.def, key, value, 0) } {
            0 => Ok(()),
            e => Err(Error(e as i32)),
        }
    }

    /// Removes `key` (arrays cannot remove: -EINVAL).
    #[inline(always)]
    pub fn remove(&self, key: &K) -> Result<()> {
        let f: unsafe extern "C" fn(MapHandle, *const K) -> i64 = unsafe { core::mem::transmute(MAP_DELETE_ELEM) };
        match unsafe { f(self.def, key) } {
            0 => Ok(()),
            e => Err(Error(e as i32)),
        }
    }
}

/// A pseudo-random number (bpf_get_prandom_u32).
#[inline(always)]
pub fn random_u32() -> u32 {
    let f: unsafe extern "C" fn() -> u32 = unsafe { core::mem::transmute(GET_PRANDOM_U32) };
    unsafe { f() }
}

/// Monotonic clock in nanoseconds (bpf_ktime_get_ns; CLOCK_MONOTONIC in userland).
#[inline(always)]
pub fn timestamp_ns() -> u64 {
    let f: unsafe extern "C" fn() -> u64 = unsafe { core::mem::transmute(KTIME_GET_NS) };
    unsafe { f() }
}

/// Calls `f(0) .. f(n - 1)` (at most 1 << 23 times). In XDP this is the bpf_loop helper:
/// the verifier checks `f` once instead of walking every iteration, so `n` may be large
/// and need not be known at compile time.
#[inline(always)]
pub fn repeat<F: FnMut(u32)>(n: u32, mut f: F) {
    extern "C" fn step<F: FnMut(u32)>(index: u64, ctx: *mut u8) -> i64 {
        let f = unsafe { &mut *(ctx as *mut F) };
        f(index as u32);
        0
    }
    let helper: unsafe extern "C" fn(u32, *const u8, *mut u8, u64) -> i64 = unsafe { core::mem::transmute(LOOP) };
    let callback: extern "C" fn(u64, *mut u8) -> i64 = step::<F>;
    unsafe { helper(n.min(1 << 23), callback as *const u8, &mut f as *mut F as *mut u8, 0) };
}
