//! dpi: userland deep packet inspection (runs only in AF_XDP workers: it uses std). Looks
//! for byte signatures in the L4 payload of IPv4 TCP/UDP frames; a match marks the flow
//! malicious in `flow_state` (shared with weak-classifier, which then drops the flow in XDP)
//! and returns Matched. A flow that has shown INSPECT_PACKETS clean packets is marked clean;
//! until then weak-classifier keeps sending it here. dpi owns a flow's entry once
//! weak-classifier has inserted it: `packets`/`bytes` count what dpi inspected. A malicious
//! verdict is final: it is never turned back into clean.
//!
//! Signatures are configurable without recompiling: set GALETTE_DPI_SIGNATURES to a file
//! with one signature per line — plain text, or `hex:` followed by hex bytes; blank lines and
//! `#` comments are ignored. The file is read once, when the first frame arrives. Without
//! the variable, DEFAULT_SIGNATURES apply.
use nf::{Packet, maps};
use std::sync::OnceLock;

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
    pub verdict: u32,
    pub pad: u32,
}

pub const VERDICT_NONE: u32 = 0;
pub const VERDICT_CLEAN: u32 = 1;
pub const VERDICT_MALICIOUS: u32 = 2;
/// weak-classifier's inspection window (kept in step with it).
pub const INSPECT_PACKETS: u64 = 4;

pub const DEFAULT_SIGNATURES: &[&[u8]] = &[b"GALETTE-EVIL", b"/bin/sh", b"\x90\x90\x90\x90\x90\x90\x90\x90"];

#[maps]
pub struct Maps {
    #[map(type = "hash_map", size = 65536)]
    pub flow_state: (FlowKey, FlowState),
}

pub enum Action {
    Clean,
    Matched,
}

/// Parses a signature file (see the crate docs); errors name the line.
pub fn parse_signatures(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sig = match line.strip_prefix("hex:") {
            Some(hex) => {
                let hex: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
                if !hex.len().is_multiple_of(2) {
                    return Err(format!("line {}: odd number of hex digits", i + 1));
                }
                (0..hex.len())
                    .step_by(2)
                    .map(|j| u8::from_str_radix(&hex[j..j + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|e| format!("line {}: bad hex: {e}", i + 1))?
            }
            None => line.as_bytes().to_vec(),
        };
        out.push(sig);
    }
    Ok(out)
}

fn signatures() -> &'static [Vec<u8>] {
    static SIGNATURES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SIGNATURES.get_or_init(|| match std::env::var_os("GALETTE_DPI_SIGNATURES") {
        Some(path) => {
            let loaded =
                std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|text| parse_signatures(&text));
            match loaded {
                Ok(sigs) => sigs,
                Err(e) => {
                    // Fail closed to the defaults, loudly: a typo must not disable inspection.
                    eprintln!("dpi: cannot use signatures from {}: {e}; using the defaults", path.to_string_lossy());
                    DEFAULT_SIGNATURES.iter().map(|s| s.to_vec()).collect()
                }
            }
        }
        None => DEFAULT_SIGNATURES.iter().map(|s| s.to_vec()).collect(),
    })
}

/// The flow and the payload offset of an IPv4 TCP/UDP frame.
fn parse(frame: &[u8]) -> Option<(FlowKey, usize)> {
    if frame.len() < 34 || frame[12] != 0x08 || frame[13] != 0x00 || frame[14] >> 4 != 4 {
        return None;
    }
    let proto = frame[23];
    let l4 = 14 + ((frame[14] & 0x0f) as usize) * 4;
    let payload = match proto {
        6 => l4 + ((*frame.get(l4 + 12)? >> 4) as usize) * 4,
        17 => l4 + 8,
        _ => return None,
    };
    let ports = frame.get(l4..l4 + 4)?;
    let key = FlowKey {
        saddr: frame[26..30].try_into().ok()?,
        daddr: frame[30..34].try_into().ok()?,
        sport: [ports[0], ports[1]],
        dport: [ports[2], ports[3]],
        proto,
        pad: [0; 3],
    };
    Some((key, payload.min(frame.len())))
}

pub fn scan(payload: &[u8], sigs: &[Vec<u8>]) -> bool {
    sigs.iter().any(|s| !s.is_empty() && payload.windows(s.len()).any(|w| w == s.as_slice()))
}

pub fn packet(pkt: &mut Packet, maps: &Maps) -> Action {
    let len = pkt.len();
    let Some(frame) = pkt.slice(len) else { return Action::Clean };
    let Some((key, payload_at)) = parse(frame) else { return Action::Clean };
    let matched = scan(&frame[payload_at..], signatures());
    let mut state =
        maps.flow_state.get(&key).unwrap_or(FlowState { packets: 0, bytes: 0, verdict: VERDICT_NONE, pad: 0 });
    state.packets = state.packets.wrapping_add(1);
    state.bytes = state.bytes.wrapping_add(len as u64);
    if matched {
        state.verdict = VERDICT_MALICIOUS;
    } else if state.verdict == VERDICT_NONE && state.packets >= INSPECT_PACKETS {
        state.verdict = VERDICT_CLEAN;
    }
    // Another worker may have flagged the flow since the read above: never clear it again.
    if state.verdict == VERDICT_CLEAN && maps.flow_state.get(&key).is_some_and(|now| now.verdict == VERDICT_MALICIOUS) {
        state.verdict = VERDICT_MALICIOUS;
    }
    let _ = maps.flow_state.put(&key, &state);
    if matched { Action::Matched } else { Action::Clean }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 42];
        f[12] = 0x08;
        f[14] = 0x45;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&4000u16.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn matches_default_signatures_and_flags_the_flow() {
        let maps = Maps::for_test();
        let f = udp(b"hello GALETTE-EVIL world");
        assert!(matches!(packet(&mut Packet::new(&f), &maps), Action::Matched));
        let (key, _) = parse(&f).unwrap();
        assert_eq!(maps.flow_state.get(&key).unwrap().verdict, VERDICT_MALICIOUS);
    }

    #[test]
    fn clean_payload_is_clean() {
        let maps = Maps::for_test();
        assert!(matches!(packet(&mut Packet::new(&udp(b"just some bytes")), &maps), Action::Clean));
        // the signature in the headers, not the payload, does not count
        assert!(matches!(packet(&mut Packet::new(&[0x90u8; 60]), &maps), Action::Clean));
    }

    #[test]
    fn clears_a_flow_after_enough_clean_packets_but_never_a_flagged_one() {
        let maps = Maps::for_test();
        let clean = udp(b"hello");
        let key = parse(&clean).unwrap().0;
        for i in 1..=INSPECT_PACKETS {
            assert!(matches!(packet(&mut Packet::new(&clean), &maps), Action::Clean));
            let want = if i < INSPECT_PACKETS { VERDICT_NONE } else { VERDICT_CLEAN };
            assert_eq!(
                (maps.flow_state.get(&key).unwrap().packets, maps.flow_state.get(&key).unwrap().verdict),
                (i, want)
            );
        }
        let evil = udp(b"xx GALETTE-EVIL xx");
        assert!(matches!(packet(&mut Packet::new(&evil), &maps), Action::Matched));
        for _ in 0..2 * INSPECT_PACKETS {
            packet(&mut Packet::new(&clean), &maps);
        }
        assert_eq!(maps.flow_state.get(&key).unwrap().verdict, VERDICT_MALICIOUS);
    }

    #[test]
    fn parses_signature_files() {
        let sigs = parse_signatures("# comment\n\nattack\nhex: de ad be ef\n").unwrap();
        assert_eq!(sigs, vec![b"attack".to_vec(), vec![0xde, 0xad, 0xbe, 0xef]]);
        assert!(scan(b"xx\xde\xad\xbe\xefyy", &sigs));
        assert_eq!(parse_signatures("hex: abc").unwrap_err(), "line 1: odd number of hex digits");
    }
}
