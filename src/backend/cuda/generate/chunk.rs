//! Chunks of images for the convolutions: how many images of the batch
//! one im2col / GEMM / epilogue pass covers, so that the workspace
//! (`scratch.col`, `C·K·K × c·OH·OW`, and `scratch.tmp`, `F × c·OH·OW`)
//! stays under a budget instead of growing with the batch.
//!
//! Assumes per-image sizes in bytes. Guarantees: a chunk size of at least
//! 1 image and at most the batch; the whole batch in one chunk when it
//! fits the budget (one launch per kernel, as without chunking); otherwise
//! the fewest chunks that fit, of equal size but the last (so at most two
//! sizes, and two specialisations of each kernel). A single image larger
//! than the budget is a chunk of its own: the budget is then exceeded.

/// Default budget for each of `scratch.col` and `scratch.tmp`, in bytes:
/// 64 MiB. AlexNet's conv1 at batch 128 (`363 × 128·55·55` floats,
/// 562 MB) runs in 9 chunks of 15 images; layers whose whole batch fits
/// stay one chunk.
pub const DEFAULT_CONV_WORKSPACE: u64 = 64 << 20;

/// Images per chunk for a batch of `batch` whose im2col matrix takes
/// `col` bytes and GEMM output `tmp` bytes per image, under `budget`
/// bytes each.
pub fn images(batch: usize, col: u64, tmp: u64, budget: u64) -> usize {
    let per = col.max(tmp).max(1);
    let most = usize::try_from(budget / per).unwrap_or(usize::MAX).max(1);
    if most >= batch {
        return batch.max(1);
    }
    let chunks = batch.div_ceil(most);
    batch.div_ceil(chunks)
}

/// The chunks of a batch of `batch` in chunks of `c` images: `(first image, images)`.
pub fn spans(batch: usize, c: usize) -> impl Iterator<Item = (usize, usize)> {
    let c = c.max(1);
    (0..batch).step_by(c).map(move |s| (s, c.min(batch - s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_batch_when_it_fits() {
        assert_eq!(images(128, 10, 20, 1 << 20), 128);
        assert_eq!(spans(4, 4).collect::<Vec<_>>(), vec![(0, 4)]);
    }

    #[test]
    fn fewest_even_chunks_otherwise() {
        // conv1 of AlexNet: 363·3025·4 bytes an image.
        let c = images(128, 363 * 3025 * 4, 96 * 3025 * 4, DEFAULT_CONV_WORKSPACE);
        assert_eq!(c, 15);
        let s: Vec<_> = spans(128, c).collect();
        assert_eq!(s.len(), 9);
        assert_eq!(s.last(), Some(&(120, 8)));
        assert_eq!(images(5, 10, 1, 20), 2);
        assert_eq!(
            spans(5, 2).collect::<Vec<_>>(),
            vec![(0, 2), (2, 2), (4, 1)]
        );
    }

    #[test]
    fn at_least_one_image() {
        assert_eq!(images(4, 100, 100, 1), 1);
        assert_eq!(images(4, 0, 0, 0), 1);
        assert_eq!(spans(3, 0).count(), 3);
    }
}
