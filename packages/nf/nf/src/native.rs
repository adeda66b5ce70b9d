//! Native backend: NF libraries run by AF_XDP userland workers. Mirrors `struct galette_pkt`
//! from packages/xdp-native/include/galette_abi.h. A `BPF_F_MMAPABLE` array the worker has
//! mapped is read and written in memory; every other map goes through libbpf's
//! `bpf_map_*_elem`, resolved from the worker process when it dlopens the library.
use crate::{Error, Result};
use core::ffi::c_void;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, Ordering};

/// `struct galette_pkt`.
#[repr(C)]
pub struct GalettePkt {
    pub data: *mut u8,
    pub len: u32,
    pub headroom: u32,
    pub tailroom: u32,
}

/// `struct galette_nf_map`: a map's fd and, for a mapped `BPF_F_MMAPABLE` array, its values.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MapHandle {
    pub fd: i32,
    pub max_entries: u32,
    pub value_size: u32,
    pub reserved: u32,
    pub data: *mut u8,
}

impl MapHandle {
    /// A map reached through bpf() only (workers that pass bare fds).
    #[doc(hidden)]
    #[inline(always)]
    pub fn fd_only(fd: i32) -> Self {
        MapHandle { fd, max_entries: 0, value_size: 0, reserved: 0, data: core::ptr::null_mut() }
    }
}

unsafe extern "C" {
    fn bpf_map_lookup_elem(fd: i32, key: *const c_void, value: *mut c_void) -> i32;
    fn bpf_map_update_elem(fd: i32, key: *const c_void, value: *const c_void, flags: u64) -> i32;
    fn bpf_map_delete_elem(fd: i32, key: *const c_void) -> i32;
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

#[repr(C)]
struct Timespec {
    sec: isize,
    nsec: isize,
}

const CLOCK_MONOTONIC: i32 = 1;
const EINVAL: i32 = 22;
const E2BIG: i32 = 7;

/// The frame being processed.
pub struct Packet {
    raw: *mut GalettePkt,
}

impl Packet {
    #[doc(hidden)]
    #[inline(always)]
    pub unsafe fn __from_raw(raw: *mut GalettePkt) -> Self {
        Packet { raw }
    }

    #[inline(always)]
    fn raw(&self) -> &GalettePkt {
        unsafe { &*self.raw }
    }

    /// Length of the frame in bytes.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.raw().len as usize
    }

    /// The first `n` bytes, or None if the frame is shorter.
    #[inline(always)]
    pub fn slice(&mut self, n: usize) -> Option<&mut [u8]> {
        self.slice_from(0, n)
    }

    /// `n` bytes starting at `off`, or None if they are not all inside the frame.
    #[inline(always)]
    pub fn slice_from(&mut self, off: usize, n: usize) -> Option<&mut [u8]> {
        let end = off.checked_add(n)?;
        if end > self.len() {
            return None;
        }
        Some(unsafe { core::slice::from_raw_parts_mut(self.raw().data.add(off), n) })
    }

    /// Grows (negative `delta`) or shrinks (positive) the frame at its head.
    pub fn adjust_head(&mut self, delta: i32) -> Result<()> {
        let p = unsafe { &mut *self.raw };
        if delta < 0 {
            let grow = delta.unsigned_abs();
            if grow > p.headroom {
                return Err(Error(-EINVAL));
            }
            p.data = unsafe { p.data.sub(grow as usize) };
            p.len += grow;
            p.headroom -= grow;
        } else {
            let shrink = delta as u32;
            if shrink > p.len {
                return Err(Error(-EINVAL));
            }
            p.data = unsafe { p.data.add(shrink as usize) };
            p.len -= shrink;
            p.headroom += shrink;
        }
        Ok(())
    }

    /// Grows (positive `delta`) or shrinks (negative) the frame at its tail.
    pub fn adjust_tail(&mut self, delta: i32) -> Result<()> {
        let p = unsafe { &mut *self.raw };
        if delta > 0 {
            let grow = delta as u32;
            if grow > p.tailroom {
                return Err(Error(-EINVAL));
            }
            p.len += grow;
            p.tailroom -= grow;
        } else {
            let shrink = delta.unsigned_abs();
            if shrink > p.len {
                return Err(Error(-EINVAL));
            }
            p.len -= shrink;
            p.tailroom += shrink;
        }
        Ok(())
    }
}

/// A BPF map shared with the NF's XDP instances.
pub struct Map<K, V> {
    h: MapHandle,
    _types: PhantomData<(K, V)>,
}

impl<K: Copy + 'static, V: Copy + 'static> Map<K, V> {
    /// The kernel's array element stride: values rounded up to 8 bytes.
    const STRIDE: usize = (core::mem::size_of::<V>() + 7) & !7;

    #[doc(hidden)]
    #[inline(always)]
    pub unsafe fn __bind(h: MapHandle) -> Self {
        Map { h, _types: PhantomData }
    }

    #[doc(hidden)]
    #[inline(always)]
    pub fn __in_memory() -> Self {
        Map { h: MapHandle::fd_only(-1), _types: PhantomData }
    }

    /// The mapped slot of `key` when the map is a mapped array: `Some(None)` for an index out
    /// of range, None when the map goes through bpf() (also when `V` is not the map's value:
    /// never write past an element).
    #[inline(always)]
    fn slot(&self, key: &K) -> Option<Option<*mut u8>> {
        if self.h.data.is_null()
            || core::mem::size_of::<K>() != 4
            || core::mem::size_of::<V>() != self.h.value_size as usize
        {
            return None;
        }
        let idx = unsafe { core::ptr::read_unaligned(key as *const K as *const u32) };
        if idx >= self.h.max_entries {
            return Some(None);
        }
        Some(Some(unsafe { self.h.data.add(idx as usize * Self::STRIDE) }))
    }

    /// A copy of the value stored under `key`.
    #[inline(always)]
    pub fn get(&self, key: &K) -> Option<V> {
        if let Some(slot) = self.slot(key) {
            return slot.map(|p| unsafe { load::<V>(p) });
        }
        let mut v = core::mem::MaybeUninit::<V>::uninit();
        let r =
            unsafe { bpf_map_lookup_elem(self.h.fd, key as *const K as *const c_void, v.as_mut_ptr() as *mut c_void) };
        if r == 0 { Some(unsafe { v.assume_init() }) } else { None }
    }

    /// Inserts or replaces the value under `key`.
    #[inline(always)]
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        if let Some(slot) = self.slot(key) {
            // bpf() answers E2BIG for an array index past the end
            let p = slot.ok_or(Error(-E2BIG))?;
            unsafe { store::<V>(p, value) };
            return Ok(());
        }
        let r = unsafe {
            bpf_map_update_elem(self.h.fd, key as *const K as *const c_void, value as *const V as *const c_void, 0)
        };
        if r == 0 { Ok(()) } else { Err(Error(r)) }
    }

    /// Removes `key`.
    #[inline(always)]
    pub fn remove(&self, key: &K) -> Result<()> {
        let r = unsafe { bpf_map_delete_elem(self.h.fd, key as *const K as *const c_void) };
        if r == 0 { Ok(()) } else { Err(Error(r)) }
    }
}

// Values of 1, 2, 4 and 8 bytes (8-byte aligned in the array) are read and written in one
// access, so neither side sees half of the other's write. Larger values are copied byte-wise
// and may tear against a concurrent writer, as with bpf(), which copies them with memcpy too.
#[inline(always)]
unsafe fn load<V: Copy>(p: *const u8) -> V {
    use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32};
    unsafe {
        match core::mem::size_of::<V>() {
            1 => core::mem::transmute_copy(&(*(p as *const AtomicU8)).load(Ordering::Relaxed)),
            2 => core::mem::transmute_copy(&(*(p as *const AtomicU16)).load(Ordering::Relaxed)),
            4 => core::mem::transmute_copy(&(*(p as *const AtomicU32)).load(Ordering::Relaxed)),
            8 => core::mem::transmute_copy(&(*(p as *const AtomicU64)).load(Ordering::Relaxed)),
            _ => core::ptr::read_unaligned(p as *const V),
        }
    }
}

#[inline(always)]
unsafe fn store<V: Copy>(p: *mut u8, v: &V) {
    use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32};
    unsafe {
        match core::mem::size_of::<V>() {
            1 => (*(p as *const AtomicU8)).store(core::mem::transmute_copy(v), Ordering::Relaxed),
            2 => (*(p as *const AtomicU16)).store(core::mem::transmute_copy(v), Ordering::Relaxed),
            4 => (*(p as *const AtomicU32)).store(core::mem::transmute_copy(v), Ordering::Relaxed),
            8 => (*(p as *const AtomicU64)).store(core::mem::transmute_copy(v), Ordering::Relaxed),
            _ => core::ptr::write_unaligned(p as *mut V, *v),
        }
    }
}

/// Monotonic clock in nanoseconds (the same clock as bpf_ktime_get_ns).
pub fn timestamp_ns() -> u64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    unsafe { clock_gettime(CLOCK_MONOTONIC, &mut ts) };
    (ts.sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.nsec as u64)
}

static RANDOM_STATE: AtomicU64 = AtomicU64::new(0);

/// A pseudo-random number (xorshift64*, seeded from the clock; not cryptographic).
pub fn random_u32() -> u32 {
    let mut x = RANDOM_STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = timestamp_ns() | 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    RANDOM_STATE.store(x, Ordering::Relaxed);
    (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
}

/// Calls `f(0) .. f(n - 1)` (at most 1 << 23 times, like the XDP build).
pub fn repeat<F: FnMut(u32)>(n: u32, mut f: F) {
    for i in 0..n.min(1 << 23) {
        f(i);
    }
}
