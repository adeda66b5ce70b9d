//! load-balance: sends each frame to one of two branches at random, 50/50.
#![no_std]
use nf::{Packet, random_u32};

pub enum Action {
    First,
    Second,
}

pub fn packet(_pkt: &mut Packet) -> Action {
    if random_u32() & 1 == 0 { Action::First } else { Action::Second }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_roughly_evenly() {
        let mut first = 0;
        for _ in 0..10_000 {
            if matches!(packet(&mut Packet::new(&[0u8; 60])), Action::First) {
                first += 1;
            }
        }
        assert!((4_500..5_500).contains(&first), "first got {first} of 10000");
    }
}
