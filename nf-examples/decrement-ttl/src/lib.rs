//! decrement-ttl: decrements the IPv4 TTL and fixes the header checksum incrementally
//! (RFC 1624: HC' = ~(~HC + ~m + m')). A frame whose TTL is already 0 or 1 is Expired (a
//! router would drop it and send ICMP time-exceeded). Non-IPv4 frames go on unchanged (Next).
#![no_std]
use nf::Packet;

pub enum Action {
    Next,
    Expired,
}

pub fn packet(pkt: &mut Packet) -> Action {
    let Some(h) = pkt.slice(14 + 20) else { return Action::Next };
    if h[12] != 0x08 || h[13] != 0x00 || h[14] >> 4 != 4 {
        return Action::Next;
    }
    let ttl = h[22];
    if ttl <= 1 {
        return Action::Expired;
    }
    // the 16-bit word holding TTL (high byte) and protocol
    let old = u16::from_be_bytes([ttl, h[23]]);
    let new = old.wrapping_sub(0x0100);
    let hc = u16::from_be_bytes([h[24], h[25]]);
    let mut sum = (!hc) as u32 + (!old) as u32 + new as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let checksum = (!(sum as u16)).to_be_bytes();
    h[22] = ttl - 1;
    h[24] = checksum[0];
    h[25] = checksum[1];
    Action::Next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum(hdr: &[u8]) -> u16 {
        let mut sum = 0u32;
        for w in hdr.chunks(2) {
            sum += u16::from_be_bytes([w[0], w[1]]) as u32;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn frame(ttl: u8) -> [u8; 34] {
        let mut f = [0u8; 34];
        f[12] = 0x08;
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&20u16.to_be_bytes());
        ip[8] = ttl;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let c = checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn decrements_ttl_and_keeps_the_checksum_valid() {
        for ttl in [2u8, 64, 128, 255] {
            let mut pkt = Packet::new(&frame(ttl));
            assert!(matches!(packet(&mut pkt), Action::Next));
            let ip = &pkt.bytes()[14..34];
            assert_eq!(ip[8], ttl - 1);
            assert_eq!(checksum(ip), 0, "header checksum must verify for ttl {ttl}");
        }
    }

    #[test]
    fn expires_ttl_one_and_zero_without_touching_the_frame() {
        for ttl in [0u8, 1] {
            let f = frame(ttl);
            let mut pkt = Packet::new(&f);
            assert!(matches!(packet(&mut pkt), Action::Expired));
            assert_eq!(pkt.bytes(), &f);
        }
    }

    #[test]
    fn passes_non_ipv4() {
        let mut f = frame(64);
        f[12] = 0x86;
        f[13] = 0xdd;
        let mut pkt = Packet::new(&f);
        assert!(matches!(packet(&mut pkt), Action::Next));
        assert_eq!(pkt.bytes(), &f);
    }
}
