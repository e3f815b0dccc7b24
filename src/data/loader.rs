//! Batches for an epoch, assembled ahead of time on background threads.
//!
//! Assumes an [`ImageSource`] (an in-memory [`Split`], or a prepared
//! dataset whose records are decoded on the worker threads) shared through
//! an [`Arc`] and an [`Augmenter`] built for its image shape. Guarantees:
//!
//! - **Order.** Epoch `e` visits the images in the order of a Fisher–Yates
//!   shuffle drawn from `Rng::new(seed, e)` (or in file order if `shuffle`
//!   is off). Batch `b` holds positions `b·N .. (b+1)·N` of that order; the
//!   last partial batch is kept or dropped (`drop_last`).
//! - **Contents.** A batch is a pure function of `(seed, epoch, batch
//!   index)`: each image's augmentation is keyed by `(seed, epoch, image
//!   index)` (see [`super::augment`]), so batches do not depend on the number
//!   of worker threads, the prefetch depth, or where the epoch was started.
//!   [`Loader::epoch`]`(e, k)` yields exactly the batches `k..` of
//!   [`Loader::epoch`]`(e, 0)` (resume mid-epoch).
//! - **Layout.** `Batch::images` is `f32` `[N, C, H, W]` (for
//!   [`Mode::TenCrop`], `[N·10, C, H, W]` with image `i`'s crops at
//!   `10i .. 10i+10`), normalised as [`super::augment`] describes;
//!   `Batch::labels` is `u32` `[N]`.
//! - **Prefetch.** One producer thread per epoch assembles batches in order
//!   (each batch's images in parallel on a private rayon pool of `workers`
//!   threads) into a bounded channel `prefetch` batches deep. The consumer
//!   never blocks while a batch is ready; every time it must block, the wait
//!   is counted in [`WaitStats`] (the first batch of each epoch is counted
//!   separately as warm-up). Dropping an [`EpochIter`] early stops its
//!   producer.
//! - **Buffers.** A batch handed back with [`Loader::recycle`] lends its
//!   image buffer to a later batch (contents as if fresh), so steady-state
//!   batches do not fault in new memory.
//! - **Errors.** An image the source cannot give (a damaged record) ends
//!   the epoch's batches early; [`Loader::take_error`] then returns the
//!   error, which the caller must check after the last batch.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::augment::{Augmenter, ConfigError, Mode};
use super::source::ImageSource;
use super::{DataError, Split};
use crate::rng::Rng;

/// Which examples of each global batch a rank takes: `size` consecutive
/// shares of `batch / size` examples, rank `r` the `r`-th.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub size: usize,
}

impl Shard {
    /// The whole batch (one process).
    pub const WHOLE: Shard = Shard { rank: 0, size: 1 };

    /// The examples per rank of a global `batch`, or why `size` ranks
    /// cannot share it.
    pub fn local_batch(&self, batch: u64) -> Result<u64, String> {
        let n = self.size as u64;
        if n == 0 || !batch.is_multiple_of(n) {
            return Err(format!(
                "the global batch {batch} does not divide among {n} ranks: each rank takes batch/{n} examples of every step; give a batch that {n} divides (`--batch`) or run on a number of ranks that divides {batch}"
            ));
        }
        Ok(batch / n)
    }

    /// The first example of a global batch this rank takes.
    pub fn offset(&self, local_batch: u64) -> u64 {
        self.rank as u64 * local_batch
    }
}

/// Loader options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Images per batch (> 0).
    pub batch_size: usize,
    /// Drop the last batch if it is smaller than `batch_size`.
    pub drop_last: bool,
    /// Shuffle each epoch (training); off visits images in order.
    pub shuffle: bool,
    /// Seed of the shuffles. (Augmentation has its own seed in the
    /// [`Augmenter`]; using the same value for both is fine.)
    pub seed: u64,
    /// Threads that augment the images of a batch (at least 1 is used).
    pub workers: usize,
    /// Batches assembled ahead of the consumer (at least 1 is used).
    pub prefetch: usize,
    pub mode: Mode,
}

impl LoaderConfig {
    /// Training defaults: shuffled, random augmentation, last partial batch
    /// dropped, two worker threads, four batches ahead.
    pub fn train(batch_size: usize, seed: u64) -> Self {
        LoaderConfig {
            batch_size,
            drop_last: true,
            shuffle: true,
            seed,
            workers: 2,
            prefetch: 4,
            mode: Mode::Train,
        }
    }
    /// Evaluation defaults: in order, centre crops, every image kept.
    pub fn eval(batch_size: usize) -> Self {
        LoaderConfig {
            batch_size,
            drop_last: false,
            shuffle: false,
            seed: 0,
            workers: 2,
            prefetch: 2,
            mode: Mode::Center,
        }
    }
}

/// One batch. See the module documentation for the layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub epoch: u64,
    /// Index of this batch within its epoch.
    pub index: usize,
    /// `[N, C, H, W]` (`N` counts crops: ten per image for [`Mode::TenCrop`]).
    pub shape: [usize; 4],
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    /// Which images of the split the batch holds, in order.
    pub indices: Vec<usize>,
}

/// How long consumers have waited for batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitStats {
    /// Batches delivered.
    pub batches: u64,
    /// Deliveries (after the first of each epoch) for which the consumer
    /// had to block.
    pub waits: u64,
    /// Total time blocked in those deliveries.
    pub waited: Duration,
    /// Epochs started, and total time waiting for their first batches.
    pub epochs: u64,
    pub warmup: Duration,
}

impl WaitStats {
    /// `Some("data loading could not keep up: …")` if the consumer ever had
    /// to wait after an epoch's first batch, else `None`.
    pub fn summary(&self) -> Option<String> {
        (self.waits > 0).then(|| {
            format!(
                "data loading could not keep up: waited {:.1} ms over {} of {} batches \
                 (plus {:.1} ms warm-up over {} epochs)",
                self.waited.as_secs_f64() * 1e3,
                self.waits,
                self.batches,
                self.warmup.as_secs_f64() * 1e3,
                self.epochs
            )
        })
    }
}

#[derive(Default, Debug)]
struct Counters {
    batches: AtomicU64,
    waits: AtomicU64,
    waited_ns: AtomicU64,
    epochs: AtomicU64,
    warmup_ns: AtomicU64,
}

/// Produces the batches of any epoch. Cheap to share: the split, the
/// augmenter and the thread pool are reference-counted.
pub struct Loader {
    split: Arc<dyn ImageSource>,
    aug: Arc<Augmenter>,
    cfg: LoaderConfig,
    pool: Option<Arc<rayon::ThreadPool>>,
    counters: Arc<Counters>,
    error: Arc<Mutex<Option<DataError>>>,
    /// Image buffers of batches handed back ([`Loader::recycle`]), reused
    /// so that a batch does not fault in fresh memory.
    spare: Arc<Spare>,
    /// The share of every global batch this loader gives (see
    /// [`Loader::sharded`]); the whole batch for one process.
    shard: Shard,
}

/// Buffers kept for reuse (the producer and the consumer each hold one).
const SPARE: usize = 2;

/// The reusable image buffers.
type Spare = Mutex<Vec<Vec<f32>>>;

impl Loader {
    /// Checks that `aug` fits `split` and builds the worker pool. (If the
    /// pool cannot be created, batches are assembled on the producer thread
    /// alone; the contents are the same.)
    pub fn new(split: Arc<Split>, aug: Augmenter, cfg: LoaderConfig) -> Result<Self, ConfigError> {
        Loader::from_source(split, aug, cfg)
    }

    /// [`Loader::new`] over any [`ImageSource`].
    pub fn from_source(
        split: Arc<dyn ImageSource>,
        aug: Augmenter,
        cfg: LoaderConfig,
    ) -> Result<Self, ConfigError> {
        if cfg.batch_size == 0 {
            return Err(ConfigError::ZeroBatch);
        }
        if aug.in_shape() != split.shape() {
            return Err(ConfigError::ShapeMismatch {
                stats: aug.in_shape(),
                data: split.shape(),
            });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.workers.max(1))
            .thread_name(|i| format!("netc-data-{i}"))
            .build()
            .ok()
            .map(Arc::new);
        Ok(Loader {
            split,
            aug: Arc::new(aug),
            cfg,
            pool,
            counters: Arc::default(),
            error: Arc::default(),
            spare: Arc::default(),
            shard: Shard::WHOLE,
        })
    }

    /// Hands a batch back when its images are no longer needed; the next
    /// batch reuses its buffer (same contents as a fresh one).
    pub fn recycle(&self, batch: Batch) {
        if let Ok(mut s) = self.spare.lock()
            && s.len() < SPARE
        {
            s.push(batch.images);
        }
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    /// The images the batches come from.
    pub fn source(&self) -> &dyn ImageSource {
        &*self.split
    }

    /// The error that ended an epoch's batches early, if one did (taken:
    /// the next call returns `None`).
    pub fn take_error(&self) -> Option<DataError> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }

    /// Records the first error of a batch.
    pub(crate) fn set_error(&self, e: DataError) {
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(e);
        }
    }

    /// The augmentation the batches apply.
    pub fn augmenter(&self) -> &Augmenter {
        &self.aug
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        let b = self.cfg.batch_size;
        let n = if self.shard.size > 1 {
            self.shard_len()
        } else {
            self.split.len()
        };
        if self.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// This loader as rank `shard.rank` of `shard.size` ranks: its
    /// `batch_size` is a rank's share of a global batch `batch_size ·
    /// size`, and batch `b` of an epoch holds positions
    /// `b·B + r·n .. b·B + (r+1)·n` of the epoch's order (`B` the global
    /// batch, `n` the share, `r` the rank); the last partial global batch
    /// (kept without `drop_last`) is cut into shares of `n` the same way,
    /// so a rank may have one batch fewer. The batches of all ranks
    /// together are those of one process with batch `B`, each image
    /// augmented as there (keyed by its index, not its position).
    pub fn sharded(mut self, shard: Shard) -> Loader {
        self.shard = shard;
        self
    }

    /// Images this rank visits per epoch (see [`Loader::sharded`]).
    fn shard_len(&self) -> usize {
        let (n, s) = (self.cfg.batch_size, self.shard);
        let global = n * s.size;
        let total = self.split.len();
        let full = total / global;
        let tail = if self.cfg.drop_last {
            0
        } else {
            (total - full * global).saturating_sub(s.rank * n).min(n)
        };
        full * n + tail
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The order in which epoch `epoch` visits the images.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.split.len()).collect();
        if self.cfg.shuffle {
            Rng::new(self.cfg.seed, epoch).shuffle(&mut order);
        }
        if self.shard.size <= 1 {
            return order;
        }
        // This rank's share of every global batch, in batch order.
        let (n, r) = (self.cfg.batch_size, self.shard.rank);
        let global = n * self.shard.size;
        order
            .chunks(global)
            .flat_map(|b| &b[(r * n).min(b.len())..((r + 1) * n).min(b.len())])
            .copied()
            .take(self.shard_len())
            .collect()
    }

    /// Assembles batch `index` of `epoch` on the calling thread (plus the
    /// worker pool); `None` past the end of the epoch.
    pub fn batch(&self, epoch: u64, index: usize) -> Option<Batch> {
        if index >= self.len() {
            return None;
        }
        let order = self.order(epoch);
        let made = make_batch(
            &*self.split,
            &self.aug,
            &self.cfg,
            (self.pool.as_deref(), &self.spare),
            &order,
            epoch,
            index,
        );
        made.map_err(|e| self.set_error(e)).ok()
    }

    /// Iterates over batches `start_batch..` of `epoch`, assembled ahead on
    /// a background thread.
    pub fn epoch(&self, epoch: u64, start_batch: usize) -> EpochIter {
        let (tx, rx) = sync_channel(self.cfg.prefetch.max(1));
        let split = Arc::clone(&self.split);
        let aug = Arc::clone(&self.aug);
        let pool = self.pool.clone();
        let cfg = self.cfg;
        let order = self.order(epoch);
        let end = self.len();
        let error = Arc::clone(&self.error);
        let spare = Arc::clone(&self.spare);
        let handle = std::thread::Builder::new()
            .name("netc-data-producer".into())
            .spawn(move || {
                let e = produce(
                    tx,
                    split,
                    aug,
                    cfg,
                    (pool, spare),
                    order,
                    epoch,
                    start_batch,
                    end,
                );
                if let (Err(e), Ok(mut slot)) = (e, error.lock()) {
                    slot.get_or_insert(e);
                }
            });
        // If the thread cannot be spawned, fall back to assembling batches
        // on demand in the consumer (same contents, no prefetch).
        let (rx, handle, inline) = match handle {
            Ok(h) => (Some(rx), Some(h), None),
            Err(_) => (None, None, Some(start_batch)),
        };
        self.counters.epochs.fetch_add(1, Ordering::Relaxed);
        EpochIter {
            rx,
            handle,
            inline,
            loader: self.shallow_clone(),
            epoch,
            first: true,
            counters: Arc::clone(&self.counters),
        }
    }

    fn shallow_clone(&self) -> Loader {
        Loader {
            split: Arc::clone(&self.split),
            aug: Arc::clone(&self.aug),
            cfg: self.cfg,
            pool: self.pool.clone(),
            counters: Arc::clone(&self.counters),
            error: Arc::clone(&self.error),
            spare: Arc::clone(&self.spare),
            shard: self.shard,
        }
    }

    /// Waiting statistics accumulated over all epochs so far.
    pub fn wait_stats(&self) -> WaitStats {
        let c = &self.counters;
        WaitStats {
            batches: c.batches.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
            waited: Duration::from_nanos(c.waited_ns.load(Ordering::Relaxed)),
            epochs: c.epochs.load(Ordering::Relaxed),
            warmup: Duration::from_nanos(c.warmup_ns.load(Ordering::Relaxed)),
        }
    }

    /// Resets the waiting statistics to zero.
    pub fn reset_wait_stats(&self) {
        let c = &self.counters;
        for a in [&c.batches, &c.waits, &c.waited_ns, &c.epochs, &c.warmup_ns] {
            a.store(0, Ordering::Relaxed);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn produce(
    tx: SyncSender<Batch>,
    split: Arc<dyn ImageSource>,
    aug: Arc<Augmenter>,
    cfg: LoaderConfig,
    (pool, spare): (Option<Arc<rayon::ThreadPool>>, Arc<Spare>),
    order: Vec<usize>,
    epoch: u64,
    start: usize,
    end: usize,
) -> Result<(), DataError> {
    for index in start..end {
        let b = make_batch(
            &*split,
            &aug,
            &cfg,
            (pool.as_deref(), &spare),
            &order,
            epoch,
            index,
        )?;
        if tx.send(b).is_err() {
            return Ok(()); // the consumer has gone
        }
    }
    Ok(())
}

fn make_batch(
    split: &dyn ImageSource,
    aug: &Augmenter,
    cfg: &LoaderConfig,
    (pool, spare): (Option<&rayon::ThreadPool>, &Spare),
    order: &[usize],
    epoch: u64,
    index: usize,
) -> Result<Batch, DataError> {
    let lo = (index * cfg.batch_size).min(order.len());
    let hi = (lo + cfg.batch_size).min(order.len());
    let indices = order[lo..hi].to_vec();
    let per = Augmenter::crops_per_image(cfg.mode);
    let out = aug.out_shape();
    let chunk = per * out.len();
    let mut images = spare
        .lock()
        .ok()
        .and_then(|mut s| s.pop())
        .unwrap_or_default();
    images.clear();
    images.resize(indices.len() * chunk, 0.0);
    let mode = cfg.mode;
    let one = |buf: &mut Vec<u8>, dst: &mut [f32], i: usize| -> Result<(), DataError> {
        aug.apply_into(mode, split.image(i, buf)?, epoch, i, dst);
        Ok(())
    };
    let fill = |images: &mut [f32]| {
        images
            .par_chunks_mut(chunk.max(1))
            .zip(indices.par_iter())
            .try_for_each_init(Vec::new, |buf, (dst, &i)| one(buf, dst, i))
    };
    match pool {
        Some(p) => p.install(|| fill(&mut images))?,
        None => {
            let mut buf = Vec::new();
            for (dst, &i) in images.chunks_mut(chunk.max(1)).zip(&indices) {
                one(&mut buf, dst, i)?;
            }
        }
    }
    Ok(Batch {
        epoch,
        index,
        shape: [indices.len() * per, out.c, out.h, out.w],
        images,
        labels: indices.iter().map(|&i| split.label(i)).collect(),
        indices,
    })
}

/// The batches of one epoch, in order. See [`Loader::epoch`].
pub struct EpochIter {
    rx: Option<Receiver<Batch>>,
    handle: Option<JoinHandle<()>>,
    /// Next batch to assemble in the consumer when no producer thread runs.
    inline: Option<usize>,
    loader: Loader,
    epoch: u64,
    first: bool,
    counters: Arc<Counters>,
}

impl EpochIter {
    fn record(&mut self, waited: Option<Duration>) {
        let c = &self.counters;
        c.batches.fetch_add(1, Ordering::Relaxed);
        let ns = waited.map_or(0, |d| d.as_nanos().min(u64::MAX as u128) as u64);
        if self.first {
            c.warmup_ns.fetch_add(ns, Ordering::Relaxed);
        } else if waited.is_some() {
            c.waits.fetch_add(1, Ordering::Relaxed);
            c.waited_ns.fetch_add(ns, Ordering::Relaxed);
        }
        self.first = false;
    }

    /// Joins a finished producer, re-raising its panic if it had one (a bug,
    /// which must not pass for a short epoch).
    fn finish(&mut self) {
        self.rx = None;
        if let Some(h) = self.handle.take()
            && let Err(payload) = h.join()
        {
            std::panic::resume_unwind(payload);
        }
    }
}

impl Iterator for EpochIter {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if let Some(k) = self.inline {
            let b = self.loader.batch(self.epoch, k)?;
            self.inline = Some(k + 1);
            self.record(None);
            return Some(b);
        }
        let rx = self.rx.as_ref()?;
        let got = match rx.try_recv() {
            Ok(b) => Ok((b, None)),
            Err(TryRecvError::Empty) => {
                let t = Instant::now();
                rx.recv().map(|b| (b, Some(t.elapsed())))
            }
            Err(TryRecvError::Disconnected) => Err(std::sync::mpsc::RecvError),
        };
        match got {
            Ok((b, waited)) => {
                self.record(waited);
                Some(b)
            }
            Err(_) => {
                self.finish();
                None
            }
        }
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        // Dropping the receiver makes the producer's next send fail, so it
        // stops; then wait for it (at most one batch of work).
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::augment::{AugmentConfig, MeanMode};
    use super::super::{Dataset, Stats};
    use super::*;

    fn fmnist_loader(cfg: LoaderConfig, n: usize) -> Loader {
        let ds = Dataset::embedded_fmnist().expect("embedded");
        let mut split = ds.train;
        split.images.truncate(n * split.shape.len());
        split.labels.truncate(n);
        let stats = Stats::compute(&split);
        let aug_cfg = AugmentConfig {
            random_crop: true,
            crop: 24,
            pad: 2,
            mirror: true,
            lighting_sigma: 0.0,
            mean: MeanMode::Pixel,
            scale: 1.0 / 255.0,
        };
        let aug = Augmenter::new(aug_cfg, &stats, cfg.seed).expect("augmenter");
        Loader::new(Arc::new(split), aug, cfg).expect("loader")
    }

    #[test]
    fn batches_do_not_depend_on_workers_or_prefetch() {
        let mut cfg = LoaderConfig::train(16, 7);
        cfg.drop_last = false;
        cfg.workers = 1;
        cfg.prefetch = 1;
        let one = fmnist_loader(cfg, 100);
        let many = fmnist_loader(
            LoaderConfig {
                workers: 3,
                prefetch: 5,
                ..cfg
            },
            100,
        );
        assert_eq!(one.len(), 7);
        for epoch in [0u64, 3] {
            let a: Vec<Batch> = one.epoch(epoch, 0).collect();
            let b: Vec<Batch> = many.epoch(epoch, 0).collect();
            assert_eq!(a.len(), 7);
            assert_eq!(a, b, "epoch {epoch}");
            assert_eq!(a[6].shape, [4, 1, 24, 24], "last partial batch kept");
            assert_eq!(a[0].images.len(), 16 * 24 * 24);
            // Every image exactly once, labels matching.
            let mut seen: Vec<usize> = a.iter().flat_map(|b| b.indices.clone()).collect();
            assert_ne!(seen, (0..100).collect::<Vec<_>>(), "shuffled");
            seen.sort();
            assert_eq!(seen, (0..100).collect::<Vec<_>>());
            assert_eq!(a[2], one.batch(epoch, 2).expect("batch 2"));
        }
        // Different epochs differ in order.
        assert_ne!(one.order(0), one.order(1));
        assert_eq!(one.order(1), many.order(1));
    }

    #[test]
    fn ranks_share_each_global_batch_as_one_process_takes_it() {
        // 100 images, global batch 16 on 2 ranks of 8 (the tail of 4 kept
        // for evaluation, dropped for training).
        for drop_last in [true, false] {
            let mut whole = LoaderConfig::train(16, 5);
            whole.drop_last = drop_last;
            let one = fmnist_loader(whole, 100);
            let share = LoaderConfig {
                batch_size: 8,
                ..whole
            };
            let r: Vec<Loader> = (0..2)
                .map(|rank| fmnist_loader(share, 100).sharded(Shard { rank, size: 2 }))
                .collect();
            let a: Vec<Batch> = one.epoch(2, 0).collect();
            let b: Vec<Vec<Batch>> = r.iter().map(|l| l.epoch(2, 0).collect()).collect();
            assert_eq!(r[0].len(), one.len(), "drop_last {drop_last}");
            for (k, g) in a.iter().enumerate() {
                let mut idx = b[0][k].indices.clone();
                let mut images = b[0][k].images.clone();
                if let Some(second) = b[1].get(k) {
                    idx.extend(&second.indices);
                    images.extend(&second.images);
                }
                assert_eq!(idx, g.indices, "batch {k}");
                assert_eq!(images, g.images, "batch {k}: augmented as one process");
            }
            // The partial last batch (4 images) is rank 0's alone.
            assert_eq!(r[1].len(), 6, "drop_last {drop_last}");
        }
    }

    #[test]
    fn resume_at_batch_k_equals_the_tail() {
        let cfg = LoaderConfig {
            workers: 2,
            ..LoaderConfig::train(8, 99)
        };
        let l = fmnist_loader(cfg, 60);
        assert_eq!(l.len(), 7, "60 / 8 with the last partial batch dropped");
        let full: Vec<Batch> = l.epoch(5, 0).collect();
        assert!(full.iter().all(|b| b.labels.len() == 8));
        for k in [0, 1, 4, 6, 7, 9] {
            let tail: Vec<Batch> = l.epoch(5, k).collect();
            assert_eq!(tail, full[k.min(full.len())..].to_vec(), "k = {k}");
        }
        // Early drop stops the producer without hanging.
        let mut it = l.epoch(6, 0);
        assert_eq!(it.next().map(|b| b.index), Some(0));
        drop(it);
    }

    #[test]
    fn eval_modes_are_in_order_and_ten_crop_has_ten_per_image() {
        let mut cfg = LoaderConfig::eval(32);
        let l = fmnist_loader(cfg, 50);
        let bs: Vec<Batch> = l.epoch(0, 0).collect();
        assert_eq!(bs.len(), 2);
        assert_eq!(bs[1].indices, (32..50).collect::<Vec<_>>());
        // Centre crops do not depend on the epoch.
        assert_eq!(l.epoch(9, 0).collect::<Vec<_>>()[0].images, bs[0].images);
        cfg.mode = Mode::TenCrop;
        let t = fmnist_loader(cfg, 50);
        let b = t.batch(0, 1).expect("batch");
        assert_eq!(b.shape, [180, 1, 24, 24]);
        assert_eq!(b.labels.len(), 18);
        // The fifth crop of each image is its centre crop.
        let n = 24 * 24;
        assert_eq!(&b.images[4 * n..5 * n], &bs[1].images[..n]);
    }

    #[test]
    fn waits_are_counted_and_a_fast_producer_is_not_waited_for() {
        let l = fmnist_loader(LoaderConfig::train(4, 1), 40);
        // A slow consumer: after the first batch, batches are ready.
        for b in l.epoch(0, 0) {
            assert_eq!(b.labels.len(), 4);
            std::thread::sleep(Duration::from_millis(30));
        }
        let s = l.wait_stats();
        assert_eq!((s.batches, s.epochs), (10, 1));
        // Without prefetching the consumer would wait for 9 of 10 batches;
        // allow a couple of waits for a producer descheduled on a busy machine.
        assert!(s.waits <= 2, "{s:?}");
        l.reset_wait_stats();
        assert_eq!(l.wait_stats(), WaitStats::default());
        let s = WaitStats {
            batches: 10,
            waits: 2,
            waited: Duration::from_millis(30),
            ..s
        };
        let msg = s.summary().expect("waited");
        assert!(msg.contains("waited 30.0 ms over 2 of 10 batches"), "{msg}");
    }

    /// Prints the augmentation throughput at AlexNet sizes:
    /// `cargo test --release --lib alexnet_batch_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing report, not a check"]
    fn alexnet_batch_throughput() {
        let root = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/imagenet-sample"
        ));
        if !super::super::testutil::data_present(root, "throughput report") {
            return;
        }
        let t = Instant::now();
        let ds = Dataset::image_folders(root, None, 256).expect("sample");
        let decode = t.elapsed();
        let stats = Stats::compute(&ds.train);
        let aug = Augmenter::new(AugmentConfig::alexnet(), &stats, 1).expect("aug");
        let l = Loader::new(Arc::new(ds.train), aug, LoaderConfig::train(50, 1)).expect("loader");
        let t = Instant::now();
        let n: usize = (0..4)
            .flat_map(|e| l.epoch(e, 0))
            .map(|b| b.labels.len())
            .sum();
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "decode+prepare 100 images: {:.0} ms; augment: {:.0} images/s ({n} images); {:?}",
            decode.as_secs_f64() * 1e3,
            n as f64 / secs,
            l.wait_stats()
        );
    }

    #[test]
    fn loader_rejects_bad_settings() {
        let ds = Dataset::embedded_fmnist().expect("embedded");
        let stats = Stats::compute(&ds.test);
        let aug = Augmenter::new(AugmentConfig::plain(28, 1.0), &stats, 0).expect("aug");
        let split = Arc::new(ds.test);
        let zero = LoaderConfig::eval(0);
        assert_eq!(
            Loader::new(split.clone(), aug.clone(), zero).err(),
            Some(ConfigError::ZeroBatch)
        );
        let rgb = Arc::new(Split::empty(super::super::Shape::new(3, 28, 28)));
        assert!(matches!(
            Loader::new(rgb, aug, LoaderConfig::eval(4)).err(),
            Some(ConfigError::ShapeMismatch { .. })
        ));
    }
}
