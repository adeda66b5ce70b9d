//! weak-classifier: a cheap per-flow check in front of the userland DPI (GALETTE's security
//! chain), reading the verdict dpi keeps in `flow_state`, a hash map shared with dpi:
//! - Malicious: dpi has flagged the flow (verdict = VERDICT_MALICIOUS) → the chain drops it;
//! - Normal: dpi has cleared the flow (VERDICT_CLEAN), or the frame is not IPv4 TCP/UDP;
//! - Suspicious: dpi has not judged the flow yet → dpi. Fail-closed: dpi runs in userland,
//!   behind the XDP path, so a flow is never trusted merely because packets have passed
//!   before dpi had a chance to look at them.
//!
//! It only ever inserts a flow's first entry: dpi owns the entry after that (its packet
//! counts and verdict), so a write from XDP can never overwrite a verdict dpi just stored.
#![no_std]
use nf::{Packet, maps};

/// 5-tuple; byte arrays keep it free of padding so it compares the same everywhere.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FlowKey {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    pub pad: [u8; 3],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct FlowState {
    pub packets: u64,
    pub bytes: u64,
    /// VERDICT_*, written by dpi
    pub verdict: u32,
    pub pad: u32,
}

pub const VERDICT_NONE: u32 = 0;
pub const VERDICT_CLEAN: u32 = 1;
pub const VERDICT_MALICIOUS: u32 = 2;
/// How many clean packets dpi inspects before it clears a flow (dpi applies it).
pub const INSPECT_PACKETS: u64 = 4;

#[maps]
pub struct Maps {
    #[map(type = "hash_map", size = 65536)]
    pub flow_state: (FlowKey, FlowState),
}

pub enum Action {
    Normal,
    Suspicious,
    Malicious,
}

/// The flow of an IPv4 TCP/UDP frame. The L4 header sits at a runtime offset (IHL), read
/// with slice_from so the verifier can check it against the frame end.
pub fn flow_key(pkt: &mut Packet) -> Option<FlowKey> {
    let ip = pkt.slice(14 + 20)?;
    if ip[12] != 0x08 || ip[13] != 0x00 || ip[14] >> 4 != 4 {
        return None;
    }
    let proto = ip[23];
    if proto != 6 && proto != 17 {
        return None;
    }
    let ihl = ((ip[14] & 0x0f) as usize) * 4;
    let (saddr, daddr) = ([ip[26], ip[27], ip[28], ip[29]], [ip[30], ip[31], ip[32], ip[33]]);
    let ports = pkt.slice_from(14 + ihl, 4)?;
    Some(FlowKey { saddr, daddr, sport: [ports[0], ports[1]], dport: [ports[2], ports[3]], proto, pad: [0; 3] })
}

pub fn packet(pkt: &mut Packet, maps: &Maps) -> Action {
    let Some(key) = flow_key(pkt) else { return Action::Normal };
    match maps.flow_state.get(&key) {
        Some(state) if state.verdict == VERDICT_MALICIOUS => Action::Malicious,
        Some(state) if state.verdict == VERDICT_CLEAN => Action::Normal,
        Some(_) => Action::Suspicious,
        None => {
            // A full map only loses the entry: the flow still goes to dpi, which retries it.
            let _ = maps.flow_state.put(&key, &FlowState { packets: 0, bytes: 0, verdict: VERDICT_NONE, pad: 0 });
            Action::Suspicious
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(sport: u16) -> [u8; 60] {
        let mut f = [0u8; 60];
        f[12] = 0x08;
        f[14] = 0x45;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&53u16.to_be_bytes());
        f
    }

    fn run(maps: &Maps, f: &[u8]) -> Action {
        packet(&mut Packet::new(f), maps)
    }

    #[test]
    fn flows_stay_suspicious_until_dpi_judges_them() {
        let maps = Maps::for_test();
        // however many packets pass, a flow without a verdict goes to dpi (fail-closed)
        for _ in 0..3 * INSPECT_PACKETS {
            assert!(matches!(run(&maps, &udp(1000)), Action::Suspicious));
        }
        assert!(matches!(run(&maps, &udp(1001)), Action::Suspicious));
    }

    #[test]
    fn never_overwrites_what_dpi_stored() {
        let maps = Maps::for_test();
        let f = udp(3000);
        assert!(matches!(run(&maps, &f), Action::Suspicious));
        let key = flow_key(&mut Packet::new(&f)).unwrap();
        let judged = FlowState { packets: 7, bytes: 420, verdict: VERDICT_MALICIOUS, pad: 0 };
        maps.flow_state.put(&key, &judged).unwrap();
        assert!(matches!(run(&maps, &f), Action::Malicious));
        let after = maps.flow_state.get(&key).unwrap();
        assert_eq!((after.packets, after.bytes, after.verdict), (7, 420, VERDICT_MALICIOUS));
    }

    #[test]
    fn follows_the_dpi_verdict() {
        let maps = Maps::for_test();
        let f = udp(2000);
        assert!(matches!(run(&maps, &f), Action::Suspicious));
        let key = flow_key(&mut Packet::new(&f)).unwrap();
        let mut s = maps.flow_state.get(&key).unwrap();
        assert_eq!((s.packets, s.verdict), (0, VERDICT_NONE));
        s.verdict = VERDICT_MALICIOUS;
        maps.flow_state.put(&key, &s).unwrap();
        assert!(matches!(run(&maps, &f), Action::Malicious));
        s.verdict = VERDICT_CLEAN;
        maps.flow_state.put(&key, &s).unwrap();
        assert!(matches!(run(&maps, &f), Action::Normal));
    }

    #[test]
    fn reads_ports_after_ip_options() {
        let mut f = udp(0);
        f[14] = 0x46; // IHL 6: 4 bytes of options, ports move by 4
        f[38..40].copy_from_slice(&7u16.to_be_bytes());
        let key = flow_key(&mut Packet::new(&f)).unwrap();
        assert_eq!(key.sport, 7u16.to_be_bytes());
    }

    #[test]
    fn other_traffic_is_normal() {
        let maps = Maps::for_test();
        let mut icmp = udp(1);
        icmp[23] = 1;
        assert!(matches!(run(&maps, &icmp), Action::Normal));
        assert!(matches!(run(&maps, &[0u8; 20]), Action::Normal));
    }
}
