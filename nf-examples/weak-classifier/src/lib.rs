//! weak-classifier: a cheap per-flow heuristic in front of the userland DPI (GALETTE's
//! security chain). Per IPv4 TCP/UDP flow it keeps packet/byte counts in `flow_state`, a
//! hash map shared with dpi, and decides:
//! - Malicious: dpi has flagged the flow (verdict = VERDICT_MALICIOUS) → the chain drops it;
//! - Normal: dpi has cleared the flow, or the flow has had INSPECT_PACKETS packets without
//!   a dpi verdict, or the frame is not IPv4 TCP/UDP;
//! - Suspicious: the first INSPECT_PACKETS packets of a flow dpi has not judged yet → dpi.
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
/// How many packets of a new flow go to dpi before the flow is trusted without a verdict.
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
    let mut state = maps.flow_state.get(&key).unwrap_or(FlowState { packets: 0, bytes: 0, verdict: VERDICT_NONE, pad: 0 });
    state.packets = state.packets.wrapping_add(1);
    state.bytes = state.bytes.wrapping_add(pkt.len() as u64);
    // a full map only costs us the statistics, not the decision
    let _ = maps.flow_state.put(&key, &state);
    match state.verdict {
        VERDICT_MALICIOUS => Action::Malicious,
        VERDICT_CLEAN => Action::Normal,
        _ if state.packets <= INSPECT_PACKETS => Action::Suspicious,
        _ => Action::Normal,
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
    fn new_flows_are_suspicious_then_trusted() {
        let maps = Maps::for_test();
        for _ in 0..INSPECT_PACKETS {
            assert!(matches!(run(&maps, &udp(1000)), Action::Suspicious));
        }
        assert!(matches!(run(&maps, &udp(1000)), Action::Normal));
        assert!(matches!(run(&maps, &udp(1001)), Action::Suspicious));
    }

    #[test]
    fn follows_the_dpi_verdict() {
        let maps = Maps::for_test();
        let f = udp(2000);
        assert!(matches!(run(&maps, &f), Action::Suspicious));
        let key = flow_key(&mut Packet::new(&f)).unwrap();
        let mut s = maps.flow_state.get(&key).unwrap();
        assert_eq!((s.packets, s.bytes), (1, 60));
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
