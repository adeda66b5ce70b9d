/// Key of an LPM-trie map (longest-prefix match): the kernel's `struct bpf_lpm_trie_key`
/// layout, a prefix length in bits followed by the address bytes in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LpmKey<const N: usize> {
    pub prefixlen: u32,
    pub addr: [u8; N],
}

pub type LpmKeyV4 = LpmKey<4>;
pub type LpmKeyV6 = LpmKey<16>;

impl<const N: usize> LpmKey<N> {
    /// A key for `addr/prefixlen`; lookups use the full address (`prefixlen = 8 * N`).
    #[inline(always)]
    pub const fn new(prefixlen: u32, addr: [u8; N]) -> Self {
        LpmKey { prefixlen, addr }
    }
    /// A lookup key for one address (all bits significant).
    #[inline(always)]
    pub const fn host(addr: [u8; N]) -> Self {
        LpmKey { prefixlen: (N as u32) * 8, addr }
    }
}
