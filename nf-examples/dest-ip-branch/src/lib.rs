//! dest-ip-branch: IPv4 frames whose destination is covered by a prefix in `routes` go to
//! the first branch (Matched), everything else (other destinations, non-IPv4) to Other.
//! The value is a route id for the operator; the NF only tests membership.
#![no_std]
use nf::{LpmKeyV4, Packet, maps};

#[maps]
pub struct Maps {
    #[map(type = "lpm_trie", size = 1024)]
    pub routes: (LpmKeyV4, u32),
}

pub enum Action {
    Matched,
    Other,
}

pub fn packet(pkt: &mut Packet, maps: &Maps) -> Action {
    let Some(h) = pkt.slice(14 + 20) else { return Action::Other };
    if h[12] != 0x08 || h[13] != 0x00 || h[14] >> 4 != 4 {
        return Action::Other;
    }
    let dst = [h[30], h[31], h[32], h[33]];
    if maps.routes.get(&LpmKeyV4::host(dst)).is_some() { Action::Matched } else { Action::Other }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: [u8; 4]) -> [u8; 34] {
        let mut f = [0u8; 34];
        f[12] = 0x08;
        f[14] = 0x45;
        f[30..34].copy_from_slice(&dst);
        f
    }

    #[test]
    fn branches_on_destination_prefix() {
        let maps = Maps::for_test();
        maps.routes.put(&LpmKeyV4::new(24, [10, 9, 8, 0]), &7).unwrap();
        assert!(matches!(packet(&mut Packet::new(&frame([10, 9, 8, 200])), &maps), Action::Matched));
        assert!(matches!(packet(&mut Packet::new(&frame([10, 9, 9, 1])), &maps), Action::Other));
        let mut v6 = frame([10, 9, 8, 1]);
        v6[12] = 0x86;
        assert!(matches!(packet(&mut Packet::new(&v6), &maps), Action::Other));
    }
}
