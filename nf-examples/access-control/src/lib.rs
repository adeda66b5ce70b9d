//! access-control: admits IPv4 frames whose source address is covered by a prefix in the
//! `allow_list` LPM trie (value: a rule id, unused by the NF; the operator may use it).
//! Everything else is Denied: non-IPv4 frames (ARP, IPv6, ...) and truncated frames
//! included: this is an allow-list, so what it cannot check it does not let through.
#![no_std]
use nf::{LpmKeyV4, Packet, maps};

#[maps]
pub struct Maps {
    #[map(type = "lpm_trie", size = 1024)]
    pub allow_list: (LpmKeyV4, u32),
}

pub enum Action {
    Allowed,
    Denied,
}

pub fn packet(pkt: &mut Packet, maps: &Maps) -> Action {
    // Ethernet (14) + the IPv4 header up to the source address (12..16)
    let Some(h) = pkt.slice(14 + 16) else { return Action::Denied };
    if h[12] != 0x08 || h[13] != 0x00 || h[14] >> 4 != 4 {
        return Action::Denied;
    }
    let src = [h[26], h[27], h[28], h[29]];
    match maps.allow_list.get(&LpmKeyV4::host(src)) {
        Some(_) => Action::Allowed,
        None => Action::Denied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_frame(src: [u8; 4]) -> [u8; 42] {
        let mut f = [0u8; 42];
        f[12] = 0x08;
        f[14] = 0x45;
        f[26..30].copy_from_slice(&src);
        f
    }

    fn allowed(maps: &Maps, frame: &[u8]) -> bool {
        matches!(packet(&mut Packet::new(frame), maps), Action::Allowed)
    }

    #[test]
    fn allows_sources_in_the_list_by_longest_prefix() {
        let maps = Maps::for_test();
        maps.allow_list.put(&LpmKeyV4::new(8, [10, 0, 0, 0]), &1).unwrap();
        maps.allow_list.put(&LpmKeyV4::new(32, [192, 168, 1, 7]), &2).unwrap();
        assert!(allowed(&maps, &ipv4_frame([10, 1, 2, 3])));
        assert!(allowed(&maps, &ipv4_frame([192, 168, 1, 7])));
        assert!(!allowed(&maps, &ipv4_frame([192, 168, 1, 8])));
        assert!(!allowed(&maps, &ipv4_frame([11, 0, 0, 1])));
    }

    #[test]
    fn denies_non_ipv4_and_truncated_frames() {
        let maps = Maps::for_test();
        maps.allow_list.put(&LpmKeyV4::new(0, [0, 0, 0, 0]), &1).unwrap();
        let mut arp = ipv4_frame([10, 0, 0, 1]);
        arp[13] = 0x06;
        assert!(!allowed(&maps, &arp));
        assert!(!allowed(&maps, &ipv4_frame([10, 0, 0, 1])[..29]));
        assert!(allowed(&maps, &ipv4_frame([10, 0, 0, 1])));
    }
}
