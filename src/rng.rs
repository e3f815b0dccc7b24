//! Counter-based random numbers: every draw is a pure function of
//! `(seed, stream, index)`, so results do not depend on thread count or on
//! the order in which work is scheduled, and a GPU kernel can reproduce them.
//!
//! Assumes nothing; guarantees that the same `(seed, stream, index)` always
//! yields the same value on every platform (only integer arithmetic and
//! IEEE-754 `f64` operations that are correctly rounded are used, except
//! `ln`/`cos` in [`normal`], which are deterministic for a given libm).

/// SplitMix64 finaliser: a bijective 64-bit mixer with good avalanche.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The raw 64-bit value at `index` of `stream` under `seed`.
#[inline]
pub fn bits(seed: u64, stream: u64, index: u64) -> u64 {
    mix64(mix64(seed ^ mix64(stream.wrapping_mul(0xD1B5_4A32_D192_ED03))) ^ index)
}

/// A uniform `f64` in `[0, 1)` with 53 random bits.
#[inline]
pub fn uniform(seed: u64, stream: u64, index: u64) -> f64 {
    (bits(seed, stream, index) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal value (Box–Muller over two independent uniforms).
#[inline]
pub fn normal(seed: u64, stream: u64, index: u64) -> f64 {
    let u1 = uniform(seed, stream, index.wrapping_mul(2));
    let u2 = uniform(seed, stream, index.wrapping_mul(2).wrapping_add(1));
    let r = (-2.0 * (1.0 - u1).ln()).sqrt();
    r * (std::f64::consts::TAU * u2).cos()
}

/// Derives a stream id from a name, so that streams such as
/// `"init/conv1/conv.weight"` or `"dropout/fc6"` are stable across edits
/// that do not rename them (FNV-1a, then mixed).
pub fn stream_of(name: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix64(h)
}

/// The stream of a dropout layer's masks: its node name and tower, so that
/// each tower draws its own mask (as each of the paper's GPUs did), and the
/// CPU and CUDA backends draw the same one.
pub fn dropout_stream(name: &str, device: impl std::fmt::Display) -> u64 {
    stream_of(&format!("dropout/{name}@{device}"))
}

/// A small sequential generator for code that just wants "the next number"
/// (data shuffling, augmentation parameters). It is a counter over [`bits`].
#[derive(Clone, Debug)]
pub struct Rng {
    seed: u64,
    stream: u64,
    next: u64,
}

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Self {
        Rng {
            seed,
            stream,
            next: 0,
        }
    }
    pub fn next_u64(&mut self) -> u64 {
        let v = bits(self.seed, self.stream, self.next);
        self.next += 1;
        v
    }
    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        let v = uniform(self.seed, self.stream, self.next);
        self.next += 1;
        v
    }
    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        let v = normal(self.seed, self.stream, self.next);
        self.next += 1;
        v
    }
    /// Uniform integer in `[0, n)`; `n` must be non-zero.
    pub fn below(&mut self, n: u64) -> u64 {
        // Lemire's multiply-shift; the tiny bias is irrelevant here.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_in_range_and_roughly_flat() {
        let n = 100_000;
        let mut buckets = [0usize; 10];
        for i in 0..n {
            let u = uniform(7, 1, i);
            assert!((0.0..1.0).contains(&u));
            buckets[(u * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((9_000..11_000).contains(&b), "bucket {b}");
        }
    }

    #[test]
    fn normal_has_unit_variance() {
        let n = 200_000u64;
        let (mut s, mut s2) = (0.0, 0.0);
        for i in 0..n {
            let x = normal(3, 9, i);
            s += x;
            s2 += x * x;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }

    #[test]
    fn streams_differ_and_repeat() {
        assert_eq!(bits(1, 2, 3), bits(1, 2, 3));
        assert_ne!(bits(1, 2, 3), bits(1, 3, 3));
        assert_ne!(stream_of("a"), stream_of("b"));
        let mut r = Rng::new(5, 0);
        let mut v: Vec<u32> = (0..50).collect();
        r.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }
}
