//! In-memory backend for `cargo test`: packets over a Vec, maps in a Vec of entries. Keys
//! compare by their bytes, as the kernel does; `LpmKey` keys get longest-prefix matching.
use crate::{Error, Result};
use core::any::TypeId;
use core::cell::{Cell, RefCell};
use std::vec::Vec;

/// Test maps have no handle.
pub type MapHandle = ();

const HEADROOM: usize = 256;
const TAILROOM: usize = 256;
const EINVAL: i32 = 22;
const ENOENT: i32 = 2;

/// A frame in a buffer with XDP-like head- and tailroom.
pub struct Packet {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Packet {
    /// A packet holding a copy of `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        let mut buf = std::vec![0u8; HEADROOM + bytes.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + bytes.len()].copy_from_slice(bytes);
        Packet { buf, start: HEADROOM, end: HEADROOM + bytes.len() }
    }

    /// The frame's current bytes (after the NF ran).
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn slice(&mut self, n: usize) -> Option<&mut [u8]> {
        self.slice_from(0, n)
    }

    pub fn slice_from(&mut self, off: usize, n: usize) -> Option<&mut [u8]> {
        let end = off.checked_add(n)?;
        if end > self.len() {
            return None;
        }
        Some(&mut self.buf[self.start + off..self.start + end])
    }

    pub fn adjust_head(&mut self, delta: i32) -> Result<()> {
        let new_start = self.start as i64 + delta as i64;
        if new_start < 0 || new_start > self.end as i64 {
            return Err(Error(-EINVAL));
        }
        self.start = new_start as usize;
        Ok(())
    }

    pub fn adjust_tail(&mut self, delta: i32) -> Result<()> {
        let new_end = self.end as i64 + delta as i64;
        if new_end < self.start as i64 || new_end > self.buf.len() as i64 {
            return Err(Error(-EINVAL));
        }
        self.end = new_end as usize;
        Ok(())
    }
}

pub struct Map<K, V> {
    entries: RefCell<Vec<(K, V)>>,
}

fn bytes_of<T>(v: &T) -> &[u8] {
    unsafe { core::slice::from_raw_parts(v as *const T as *const u8, core::mem::size_of::<T>()) }
}

/// For LPM keys (`u32` prefix length, then address bytes): does `entry` cover `key`?
fn prefix_covers(entry: &[u8], key: &[u8]) -> Option<u32> {
    let plen = u32::from_ne_bytes(entry[..4].try_into().ok()?);
    let klen = u32::from_ne_bytes(key[..4].try_into().ok()?);
    if plen > klen {
        return None;
    }
    let (ea, ka) = (&entry[4..], &key[4..]);
    let full = (plen / 8) as usize;
    if full > ea.len() || ea[..full] != ka[..full] {
        return None;
    }
    let rest = plen % 8;
    if rest != 0 {
        let mask = 0xffu8 << (8 - rest);
        if ea[full] & mask != ka[full] & mask {
            return None;
        }
    }
    Some(plen)
}

impl<K: Copy + 'static, V: Copy + 'static> Map<K, V> {
    #[doc(hidden)]
    pub unsafe fn __bind(_: MapHandle) -> Self {
        Self::__in_memory()
    }

    #[doc(hidden)]
    pub fn __in_memory() -> Self {
        Map { entries: RefCell::new(Vec::new()) }
    }

    fn is_lpm() -> bool {
        let k = TypeId::of::<K>();
        k == TypeId::of::<crate::LpmKey<4>>() || k == TypeId::of::<crate::LpmKey<16>>()
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.borrow();
        if Self::is_lpm() {
            return entries
                .iter()
                .filter_map(|(k, v)| prefix_covers(bytes_of(k), bytes_of(key)).map(|l| (l, *v)))
                .max_by_key(|(l, _)| *l)
                .map(|(_, v)| v);
        }
        entries.iter().find(|(k, _)| bytes_of(k) == bytes_of(key)).map(|(_, v)| *v)
    }

    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        let mut entries = self.entries.borrow_mut();
        match entries.iter_mut().find(|(k, _)| bytes_of(k) == bytes_of(key)) {
            Some(e) => e.1 = *value,
            None => entries.push((*key, *value)),
        }
        Ok(())
    }

    pub fn remove(&self, key: &K) -> Result<()> {
        let mut entries = self.entries.borrow_mut();
        let before = entries.len();
        entries.retain(|(k, _)| bytes_of(k) != bytes_of(key));
        if entries.len() == before { Err(Error(-ENOENT)) } else { Ok(()) }
    }
}

std::thread_local! {
    static RANDOM_STATE: Cell<u64> = const { Cell::new(0x9e37_79b9_7f4a_7c15) };
    static CLOCK_NS: Cell<u64> = const { Cell::new(0) };
}

/// Deterministic pseudo-random numbers in tests (xorshift64*, fixed seed per thread).
pub fn random_u32() -> u32 {
    RANDOM_STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    })
}

/// A test clock: starts at 0 and only moves with `set_test_clock_ns`.
pub fn timestamp_ns() -> u64 {
    CLOCK_NS.with(|c| c.get())
}

/// Sets what `timestamp_ns()` returns on this thread (tests of time-based NFs).
pub fn set_test_clock_ns(ns: u64) {
    CLOCK_NS.with(|c| c.set(ns));
}

/// Calls `f(0) .. f(n - 1)` (at most 1 << 23 times, like the XDP build).
pub fn repeat<F: FnMut(u32)>(n: u32, mut f: F) {
    for i in 0..n.min(1 << 23) {
        f(i);
    }
}
