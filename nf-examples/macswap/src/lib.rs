//! macswap: swaps the source and destination MAC addresses of every Ethernet frame and
//! counts the frames it swapped in `counters[0]`. Frames shorter than an Ethernet header
//! are sent back unchanged.
#![no_std]
use nf::{Packet, maps};

#[maps]
pub struct Maps {
    /// key 0: frames swapped
    #[map(type = "array", size = 1)]
    pub counters: (u32, u64),
}

pub enum Action {
    Tx,
}

pub fn packet(pkt: &mut Packet, maps: &Maps) -> Action {
    let Some(eth) = pkt.slice(14) else { return Action::Tx };
    for i in 0..6 {
        eth.swap(i, i + 6);
    }
    let count = maps.counters.get(&0).unwrap_or(0);
    let _ = maps.counters.put(&0, &(count + 1));
    Action::Tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_macs_and_counts() {
        let maps = Maps::for_test();
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&[1, 1, 1, 1, 1, 1]);
        frame[6..12].copy_from_slice(&[2, 2, 2, 2, 2, 2]);
        let mut pkt = Packet::new(&frame);
        assert!(matches!(packet(&mut pkt, &maps), Action::Tx));
        assert_eq!(&pkt.bytes()[..12], &[2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1]);
        assert_eq!(maps.counters.get(&0), Some(1));
    }

    #[test]
    fn short_frame_is_left_alone() {
        let maps = Maps::for_test();
        let mut pkt = Packet::new(&[7u8; 10]);
        assert!(matches!(packet(&mut pkt, &maps), Action::Tx));
        assert_eq!(pkt.bytes(), &[7u8; 10]);
        assert_eq!(maps.counters.get(&0), None);
    }
}
