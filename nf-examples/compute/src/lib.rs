//! compute: burns a configurable amount of CPU per frame, for the "expensive NF" benchmarks.
//! `config[0]` holds the number of iterations N (0 = DEFAULT_ITERATIONS); each iteration is
//! one FNV-1a step over a byte of the frame, kept alive with black_box so it is not optimised
//! away. The loop is nf::repeat (bpf_loop in XDP: the verifier checks the body once, where a
//! plain `while i < n` with a runtime n stopped loading at about 16k iterations, the
//! verifier walking every iteration against its 1M-instruction budget). N is clamped to
//! MAX_ITERATIONS, repeat's limit. The frame is not changed.
#![no_std]
use nf::{Packet, black_box, maps, repeat};

/// Iterations when config[0] is 0 (not configured).
pub const DEFAULT_ITERATIONS: u64 = 1_000;
/// nf::repeat's limit (bpf_loop's in XDP): 1 << 23.
pub const MAX_ITERATIONS: u64 = 1 << 23;

#[maps]
pub struct Maps {
    /// key 0: iterations per frame
    #[map(type = "array", size = 1)]
    pub config: (u32, u64),
}

pub enum Action {
    Done,
}

pub fn iterations(maps: &Maps) -> u32 {
    let n = match maps.config.get(&0) {
        Some(0) | None => DEFAULT_ITERATIONS,
        Some(n) => n,
    };
    if n > MAX_ITERATIONS { MAX_ITERATIONS as u32 } else { n as u32 }
}

pub fn packet(pkt: &mut Packet, maps: &Maps) -> Action {
    let n = iterations(maps);
    let seed = match pkt.slice(1) {
        Some(b) => b[0],
        None => 0,
    };
    let mut hash: u32 = 0x811c_9dc5;
    repeat(n, |i| {
        hash = black_box((hash ^ (seed as u32).wrapping_add(i)).wrapping_mul(0x0100_0193));
    });
    black_box(hash);
    Action::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_default_configured_and_clamped_iterations() {
        let maps = Maps::for_test();
        assert_eq!(iterations(&maps) as u64, DEFAULT_ITERATIONS);
        maps.config.put(&0, &5).unwrap();
        assert_eq!(iterations(&maps), 5);
        maps.config.put(&0, &u64::MAX).unwrap();
        assert_eq!(iterations(&maps) as u64, MAX_ITERATIONS);
    }

    #[test]
    fn leaves_the_frame_alone() {
        let maps = Maps::for_test();
        let frame = [9u8; 60];
        let mut pkt = Packet::new(&frame);
        assert!(matches!(packet(&mut pkt, &maps), Action::Done));
        assert_eq!(pkt.bytes(), &frame);
    }
}
