//! The order examples are trained in: shuffled per epoch with a seeded generator, then grouped by
//! length so that a batch pads little (transformers' `LengthGroupedSampler` idea: shuffle, cut into
//! mega-batches, sort each by length, then shuffle the batches).
//!
//! The plan of an epoch is a pure function of `(seed, epoch, lengths, batch_size)`, so a resumed
//! run rebuilds exactly the batches the interrupted run would have seen.

use crate::model::rng::Rng;

/// Mega-batch size in batches: sorting happens within `MEGA * batch_size` examples.
const MEGA: usize = 50;

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// The generator of epoch `epoch` for a run seeded `seed`.
pub fn epoch_rng(seed: u64, epoch: u64) -> Rng {
    Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ epoch.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Batches (lists of example indices) of one epoch.
pub fn epoch_batches(lengths: &[usize], batch_size: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
    let bs = batch_size.max(1);
    let mut rng = epoch_rng(seed, epoch);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    shuffle(&mut order, &mut rng);
    let mut batches: Vec<Vec<usize>> = Vec::with_capacity(lengths.len().div_ceil(bs));
    for mega in order.chunks(bs * MEGA) {
        let mut m = mega.to_vec();
        // Longest first; ties keep the shuffled order (stable sort).
        m.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]));
        batches.extend(m.chunks(bs).map(<[usize]>::to_vec));
    }
    shuffle(&mut batches, &mut rng);
    batches
}

/// Optimizer steps of one epoch: `ceil(batches / grad_accum)`.
pub fn steps_per_epoch(n_examples: usize, batch_size: usize, grad_accum: usize) -> u64 {
    n_examples.div_ceil(batch_size.max(1)).div_ceil(grad_accum.max(1)) as u64
}

/// The micro-batches of optimizer step `step` (0-based over the whole run).
pub fn step_micro_batches(lengths: &[usize], batch_size: usize, grad_accum: usize, seed: u64, step: u64) -> (u64, Vec<Vec<usize>>) {
    let per_epoch = steps_per_epoch(lengths.len(), batch_size, grad_accum).max(1);
    let epoch = step / per_epoch;
    let within = (step % per_epoch) as usize;
    let batches = epoch_batches(lengths, batch_size, seed, epoch);
    let ga = grad_accum.max(1);
    let start = (within * ga).min(batches.len());
    let end = (start + ga).min(batches.len());
    (epoch, batches[start..end].to_vec())
}

/// Padded tokens over real tokens of a batching (1.0 = no padding), for reporting.
pub fn padding_ratio(lengths: &[usize], batches: &[Vec<usize>]) -> f64 {
    let real: usize = lengths.iter().sum();
    let padded: usize = batches.iter().map(|b| b.iter().map(|&i| lengths[i]).max().unwrap_or(0) * b.len()).sum();
    if real == 0 { 1.0 } else { padded as f64 / real as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_once_per_epoch_and_little_padding() {
        let lengths: Vec<usize> = (0..1000).map(|i| 10 + (i * 7919) % 500).collect();
        let b = epoch_batches(&lengths, 8, 3, 0);
        let mut all: Vec<usize> = b.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert!(padding_ratio(&lengths, &b) < 1.1, "{}", padding_ratio(&lengths, &b));
        // Deterministic, and different across epochs.
        assert_eq!(b, epoch_batches(&lengths, 8, 3, 0));
        assert_ne!(b, epoch_batches(&lengths, 8, 3, 1));
    }

    #[test]
    fn steps_cover_the_epoch() {
        let lengths = vec![5usize; 21];
        assert_eq!(steps_per_epoch(21, 4, 2), 3);
        // 6 batches (the last of one example), two per step: every example once per epoch.
        let mut seen: Vec<usize> = Vec::new();
        for step in 0..3 {
            let (e, mbs) = step_micro_batches(&lengths, 4, 2, 0, step);
            assert_eq!(e, 0);
            assert_eq!(mbs.len(), 2);
            seen.extend(mbs.into_iter().flatten());
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..21).collect::<Vec<_>>());
        let (e, _) = step_micro_batches(&lengths, 4, 2, 0, 3);
        assert_eq!(e, 1);
    }
}
