//! The simulation's only source of randomness: SplitMix64 over the seed.

/// A SplitMix64 generator (Steele, Lea and Flood): tiny, fast, and every
/// value it yields is a function of the seed alone.
#[derive(Debug, Clone)]
pub(super) struct Rng {
    state: u64,
}

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A byte-sized index (interpreted modulo whatever it picks from).
    pub(super) fn index(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

#[test]
fn simulation_rng_is_a_function_of_the_seed() {
    let a: Vec<u64> = (0..4)
        .map({
            let mut r = Rng::new(7);
            move |_| r.next_u64()
        })
        .collect();
    let mut r = Rng::new(7);
    let b: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
    assert_eq!(a, b);
    assert_ne!(Rng::new(8).next_u64(), a[0]);
}
