//! bench-stamp-split: sends frames the bench generator flagged expensive (stamp at offset
//! 42: u16 magic 0x6761, u16 flags, host byte order; flags bit 0 = expensive, see
//! bench/c/frame.h) to its second link, everything else to its first. The expensive-NF
//! benchmark puts it first in XDP so that only flagged frames reach the expensive NF,
//! wherever that NF is placed.
#![no_std]
use nf::{Packet, maps};

pub const STAMP_OFFSET: usize = 42;
pub const STAMP_MAGIC: u16 = 0x6761;
pub const FLAG_EXPENSIVE: u16 = 1;

#[maps]
pub struct Maps {
    /// key 0: frames sent to the expensive link
    #[map(type = "array", size = 1)]
    pub counters: (u32, u64),
}

pub enum Action {
    Normal,
    Expensive,
}

pub fn is_expensive(pkt: &mut Packet) -> bool {
    let Some(stamp) = pkt.slice_from(STAMP_OFFSET, 4) else { return false };
    let magic = u16::from_le_bytes([stamp[0], stamp[1]]);
    let flags = u16::from_le_bytes([stamp[2], stamp[3]]);
    magic == STAMP_MAGIC && flags & FLAG_EXPENSIVE != 0
}

pub fn packet(pkt: &mut Packet, maps: &Maps) -> Action {
    if !is_expensive(pkt) {
        return Action::Normal;
    }
    let count = maps.counters.get(&0).unwrap_or(0);
    let _ = maps.counters.put(&0, &(count + 1));
    Action::Expensive
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(magic: u16, flags: u16) -> [u8; 60] {
        let mut f = [0u8; 60];
        f[42..44].copy_from_slice(&magic.to_le_bytes());
        f[44..46].copy_from_slice(&flags.to_le_bytes());
        f
    }

    #[test]
    fn flagged_frames_take_the_expensive_link() {
        let maps = Maps::for_test();
        let f = frame(STAMP_MAGIC, FLAG_EXPENSIVE);
        assert!(matches!(packet(&mut Packet::new(&f), &maps), Action::Expensive));
        assert_eq!(maps.counters.get(&0), Some(1));
    }

    #[test]
    fn unflagged_unstamped_and_short_frames_are_normal() {
        let maps = Maps::for_test();
        let f = frame(STAMP_MAGIC, 0);
        assert!(matches!(packet(&mut Packet::new(&f), &maps), Action::Normal));
        let f = frame(0x1234, FLAG_EXPENSIVE);
        assert!(matches!(packet(&mut Packet::new(&f), &maps), Action::Normal));
        assert!(matches!(packet(&mut Packet::new(&[0u8; 40]), &maps), Action::Normal));
        assert_eq!(maps.counters.get(&0), None);
    }
}
