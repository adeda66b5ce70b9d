//! bench-expensive: the "expensive NF" of the paper's Fig. 6–8 for Galette. Frames the
//! bench generator flagged expensive (stamp flags bit 0, see bench/c/frame.h) get
//! `config[0]` xorshift64 steps (0 = DEFAULT_ITERATIONS = 100 000, the C reference's
//! EXPENSIVE_OPS in bench/c/expensive.h); every frame gets its MAC addresses swapped so it
//! bounces back to the generator. The loop is nf::repeat (bpf_loop in XDP).
#![no_std]
use nf::{Packet, black_box, maps, repeat};

pub const DEFAULT_ITERATIONS: u64 = 100_000;
/// nf::repeat's limit (bpf_loop's in XDP): 1 << 23.
pub const MAX_ITERATIONS: u64 = 1 << 23;
pub const STAMP_OFFSET: usize = 42;
pub const STAMP_MAGIC: u16 = 0x6761;
pub const FLAG_EXPENSIVE: u16 = 1;

#[maps]
pub struct Maps {
    /// key 0: xorshift64 steps per expensive frame
    #[map(type = "array", size = 1)]
    pub config: (u32, u64),
}

pub enum Action {
    Tx,
}

pub fn iterations(maps: &Maps) -> u32 {
    let n = match maps.config.get(&0) {
        Some(0) | None => DEFAULT_ITERATIONS,
        Some(n) => n,
    };
    if n > MAX_ITERATIONS { MAX_ITERATIONS as u32 } else { n as u32 }
}

fn is_expensive(pkt: &mut Packet) -> Option<u64> {
    let stamp = pkt.slice_from(STAMP_OFFSET, 8)?;
    let magic = u16::from_le_bytes([stamp[0], stamp[1]]);
    let flags = u16::from_le_bytes([stamp[2], stamp[3]]);
    let seq = u32::from_le_bytes([stamp[4], stamp[5], stamp[6], stamp[7]]);
    (magic == STAMP_MAGIC && flags & FLAG_EXPENSIVE != 0).then_some(seq as u64 | 1)
}

pub fn packet(pkt: &mut Packet, maps: &Maps) -> Action {
    if let Some(seed) = is_expensive(pkt) {
        let mut x = seed;
        repeat(iterations(maps), |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x = black_box(x);
        });
        black_box(x);
    }
    let Some(eth) = pkt.slice(14) else { return Action::Tx };
    for i in 0..6 {
        eth.swap(i, i + 6);
    }
    Action::Tx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flags: u16) -> [u8; 60] {
        let mut f = [0u8; 60];
        f[..6].copy_from_slice(&[1; 6]);
        f[6..12].copy_from_slice(&[2; 6]);
        f[42..44].copy_from_slice(&STAMP_MAGIC.to_le_bytes());
        f[44..46].copy_from_slice(&flags.to_le_bytes());
        f[46..50].copy_from_slice(&7u32.to_le_bytes());
        f
    }

    #[test]
    fn swaps_macs_and_keeps_the_stamp_for_both_kinds() {
        let maps = Maps::for_test();
        maps.config.put(&0, &10).unwrap();
        for flags in [0, FLAG_EXPENSIVE] {
            let f = frame(flags);
            let mut pkt = Packet::new(&f);
            assert!(matches!(packet(&mut pkt, &maps), Action::Tx));
            assert_eq!(&pkt.bytes()[..12], &[2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1]);
            assert_eq!(&pkt.bytes()[12..], &f[12..]);
        }
    }

    #[test]
    fn iterations_default_and_clamp() {
        let maps = Maps::for_test();
        assert_eq!(iterations(&maps) as u64, DEFAULT_ITERATIONS);
        maps.config.put(&0, &u64::MAX).unwrap();
        assert_eq!(iterations(&maps) as u64, MAX_ITERATIONS);
    }
}
