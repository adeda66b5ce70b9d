//! bench-macswap-bare: swaps the source and destination MAC of every Ethernet frame, and
//! nothing else: the same work as the hand-written C baselines (bench/c), without the
//! per-frame counter of nf-examples/macswap (whose map update costs two bpf() syscalls per
//! frame in the userland build). Used to measure the upcall path's own overhead.
#![no_std]
use nf::{Packet, maps};

#[maps]
pub struct Maps {}

pub enum Action {
    Tx,
}

pub fn packet(pkt: &mut Packet, _maps: &Maps) -> Action {
    let Some(eth) = pkt.slice(14) else { return Action::Tx };
    for i in 0..6 {
        eth.swap(i, i + 6);
    }
    Action::Tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_macs_and_keeps_the_rest() {
        let maps = Maps::for_test();
        let mut frame = [9u8; 60];
        frame[..6].copy_from_slice(&[1; 6]);
        frame[6..12].copy_from_slice(&[2; 6]);
        let mut pkt = Packet::new(&frame);
        assert!(matches!(packet(&mut pkt, &maps), Action::Tx));
        assert_eq!(&pkt.bytes()[..12], &[2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1]);
        assert_eq!(&pkt.bytes()[12..], &frame[12..]);
    }
}
