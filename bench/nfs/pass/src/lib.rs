//! bench-pass: a pass-through NF for the 5-NF chain benchmark. It reads the Ethernet header
//! and counts frames (the per-NF work of a minimal real NF: one packet access and one map
//! update) and leaves the frame, including the bench stamp at offset 42, untouched.
#![no_std]
use nf::{Packet, maps};

#[maps]
pub struct Maps {
    /// key 0: frames seen
    #[map(type = "array", size = 1)]
    pub counters: (u32, u64),
}

pub enum Action {
    Next,
}

pub fn packet(pkt: &mut Packet, maps: &Maps) -> Action {
    if pkt.slice(14).is_none() {
        return Action::Next;
    }
    let count = maps.counters.get(&0).unwrap_or(0);
    let _ = maps.counters.put(&0, &(count + 1));
    Action::Next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_the_frame_alone_and_counts() {
        let maps = Maps::for_test();
        let frame: [u8; 60] = core::array::from_fn(|i| i as u8);
        let mut pkt = Packet::new(&frame);
        assert!(matches!(packet(&mut pkt, &maps), Action::Next));
        assert_eq!(pkt.bytes(), &frame);
        assert_eq!(maps.counters.get(&0), Some(1));
    }
}
