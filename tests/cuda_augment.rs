//! The device augmentation kernel (`backend::cuda::generate::augment`), run on the
//! emulator (`tests/emu`) on random `u8` images with the per-image draws
//! of a real `Augmenter` (training draws over several epochs, plus the
//! centre and ten test crops), against `Augmenter::crop_into`: equal bit
//! for bit. Configurations: Fashion-MNIST's (`networks/alexnet-fmnist.net`:
//! 1×28×28, crop 28, pad 2, mirror, per-pixel mean, scale 1/255), an
//! AlexNet-style RGB one (random crops smaller than the image, mirror, PCA
//! lighting, per-pixel mean, 0..255 units), a two-channel one with
//! channel means and padding wider than the crop, and an odd-sized one
//! whose packed bytes end mid-word. Offsets past the padded image give
//! zeros. The kernel also compiles with NVRTC for sm_80 and sm_90
//! (skipped without NVRTC, unless `NETC_REQUIRE_NVRTC=1`).
//!
//! And the wiring: `CudaStep::with_augment` on the emulated device, fed
//! `Loader::raw_batch`es, gives the loss, logits and updated weights of
//! `CudaStep::new` fed the loader's host-augmented batches, bit for bit
//! (the fused Fashion-MNIST network, two steps); each kind of step refuses
//! the other kind of batch, and raw batches of the wrong size.
//! Skipped with a message when `g++` is missing.

mod emu;

use std::rc::Rc;
use std::sync::Arc;

use emu::device::EmuDevice;
use emu::*;
use netc::backend::cpu::exec::CpuExec;
use netc::backend::cuda::generate::augment::attach;
use netc::backend::cuda::generate::augment::{AugmentDims, pack_bytes, pack_params, spec};
use netc::backend::cuda::generate::render::Source;
use netc::backend::cuda::step::run::CudaStep;
use netc::backend::cuda::{self};
use netc::backend::step::Step;
use netc::data::{AugmentConfig, Augmenter, MeanMode, Params, Shape, Split, Stats};
use netc::data::{Loader, LoaderConfig};
use netc::rng::Rng;
use netc::train::run::{TrainOptions, effective_config, training_graph};

/// `n` random images of `shape`, with correlated channels so the PCA of
/// RGB sets is not degenerate.
fn images(shape: Shape, n: usize, seed: u64) -> Split {
    let mut r = Rng::new(seed, 3);
    let plane = shape.h * shape.w;
    let mut bytes = vec![0u8; n * shape.len()];
    for img in bytes.chunks_mut(shape.len()) {
        for i in 0..plane {
            let base = r.below(200) as u8;
            for k in 0..shape.c {
                img[k * plane + i] = base / (k as u8 + 1) + r.below(56) as u8;
            }
        }
    }
    Split {
        shape,
        images: bytes,
        labels: vec![0; n],
    }
}

struct Case {
    name: &'static str,
    shape: Shape,
    cfg: AugmentConfig,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "fmnist",
            shape: Shape::new(1, 28, 28),
            cfg: AugmentConfig {
                random_crop: true,
                crop: 28,
                pad: 2,
                mirror: true,
                lighting_sigma: 0.0,
                mean: MeanMode::Pixel,
                scale: 0.003_921_568_627_450_98_f64 as f32,
            },
        },
        Case {
            name: "alexnet",
            shape: Shape::new(3, 24, 24),
            cfg: AugmentConfig {
                random_crop: true,
                crop: 19,
                ..AugmentConfig::alexnet()
            },
        },
        Case {
            name: "channel",
            shape: Shape::new(2, 6, 5),
            cfg: AugmentConfig {
                random_crop: true,
                crop: 4,
                pad: 5,
                mirror: true,
                lighting_sigma: 0.0,
                mean: MeanMode::Channel,
                scale: 1.0 / 63.7,
            },
        },
        Case {
            name: "odd",
            shape: Shape::new(1, 7, 9),
            cfg: AugmentConfig {
                random_crop: true,
                crop: 5,
                pad: 1,
                mirror: true,
                lighting_sigma: 0.0,
                mean: MeanMode::None,
                scale: 1.0,
            },
        },
    ]
}

/// The kernel's output for `split`'s first `params.len()` images.
fn run_kernel(
    emu: &Emu,
    d: &AugmentDims,
    aug: &Augmenter,
    split: &Split,
    params: &[Params],
) -> Vec<f32> {
    let bytes = &split.images[..d.in_bytes()];
    let img = pack_bytes(bytes);
    assert_eq!(img.len(), d.in_words());
    let (crop, light) = pack_params(params, d.c);
    let mean = aug.mean().to_vec();
    let mut out = vec![f32::NAN; d.out_len()];
    let s = spec(d);
    let (g, b) = s.grid_block();
    let p = |v: *const u8| Val::Ptr(v as *mut std::ffi::c_void);
    emu.launch(
        0,
        g,
        b,
        &[
            p(img.as_ptr().cast()),
            p(crop.as_ptr().cast()),
            p(light.as_ptr().cast()),
            p(mean.as_ptr().cast()),
            p(out.as_mut_ptr().cast()),
        ],
    );
    out
}

fn host(aug: &Augmenter, split: &Split, params: &[Params]) -> Vec<f32> {
    let n = aug.out_shape().len();
    let mut out = vec![0.0; params.len() * n];
    for (i, (p, o)) in params.iter().zip(out.chunks_mut(n)).enumerate() {
        aug.crop_into(split.image(i), p, o);
    }
    out
}

fn same_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what}: element {i}: {g} vs {w}");
    }
}

#[test]
fn device_augmentation_equals_the_host_bit_for_bit() {
    if !have_gxx() {
        eprintln!("skipped: no g++");
        return;
    }
    const BATCH: usize = 10;
    for case in cases() {
        let split = images(case.shape, BATCH, 11);
        let stats = Stats::compute(&split);
        let aug = Augmenter::new(case.cfg, &stats, 7).expect("config");
        let d = AugmentDims::of(&aug.plan(), BATCH);
        let s = spec(&d);
        let mut src = Source::default();
        src.add(&s);
        let emu = build(&format!("augment-{}", case.name), &src.text, &src.kernels);
        let mut lit = false;
        for epoch in 0..4u64 {
            let params: Vec<Params> = (0..BATCH).map(|i| aug.params(epoch, i)).collect();
            lit |= params.iter().any(|p| p.light != [0.0; 3]);
            let want = host(&aug, &split, &params);
            let got = run_kernel(&emu, &d, &aug, &split, &params);
            same_bits(&got, &want, &format!("{} epoch {epoch}", case.name));
        }
        assert_eq!(lit, case.name == "alexnet", "{}: lighting drawn", case.name);
        // The test-time crops: the ten crops (corners, centre, mirrored).
        let ten = aug.ten_crop_params();
        let params: Vec<Params> = (0..BATCH).map(|i| ten[i % 10]).collect();
        let want = host(&aug, &split, &params);
        let got = run_kernel(&emu, &d, &aug, &split, &params);
        same_bits(&got, &want, &format!("{} ten crops", case.name));
        // Offsets past the padded image: zeros, no read outside the batch.
        let far = Params {
            oy: usize::MAX,
            ox: 1 << 40,
            mirror: true,
            light: [0.5; 3],
        };
        let got = run_kernel(&emu, &d, &aug, &split, &vec![far; BATCH]);
        assert!(got.iter().all(|v| v.to_bits() == 0), "{}", case.name);
    }
}

#[test]
fn packing_is_little_endian_four_bytes_a_word() {
    assert_eq!(pack_bytes(&[1, 2, 3, 4, 5]), vec![0x0403_0201, 5]);
    assert!(pack_bytes(&[]).is_empty());
    let p = Params {
        oy: 3,
        ox: 1,
        mirror: true,
        light: [0.5, -0.25, 1.0],
    };
    let (crop, light) = pack_params(&[p, Params { mirror: false, ..p }], 4);
    assert_eq!(crop, vec![3, 1, 1, 3, 1, 0]);
    assert_eq!(
        light,
        vec![127.5, -63.75, 255.0, 0.0, 127.5, -63.75, 255.0, 0.0]
    );
}

#[test]
fn nvrtc_compiles_the_augmentation_kernel() {
    if !cuda::nvrtc::available() {
        let msg = "NVRTC cannot be loaded (install nvidia-cuda-nvrtc and put its lib folder on LD_LIBRARY_PATH)";
        if std::env::var("NETC_REQUIRE_NVRTC").as_deref() == Ok("1") {
            panic!("{msg}, and NETC_REQUIRE_NVRTC=1");
        }
        eprintln!("skipped: {msg}");
        return;
    }
    for case in cases() {
        let split = images(case.shape, 2, 1);
        let aug = Augmenter::new(case.cfg, &Stats::compute(&split), 1).expect("config");
        let mut src = Source::default();
        src.add(&spec(&AugmentDims::of(&aug.plan(), 128)));
        for arch in ["sm_80", "sm_90"] {
            let ptx = cuda::nvrtc::compile(&src.text, arch)
                .unwrap_or_else(|e| panic!("{} {arch}: {e}", case.name));
            assert!(ptx.contains(".entry augment_0("), "{} {arch}", case.name);
        }
    }
}

#[test]
fn a_step_augmented_on_the_device_equals_one_fed_host_crops() {
    if !have_gxx() {
        eprintln!("skipped: no g++");
        return;
    }
    const BATCH: usize = 4;
    let src = std::fs::read_to_string("networks/alexnet-fmnist.net").unwrap();
    let m = netc::frontend::compile(&src)
        .unwrap_or_else(|_| panic!("compiles"))
        .module;
    let g = training_graph(&m, &effective_config(&m, &TrainOptions::default()), true).unwrap();
    let fmnist = cases().remove(0);
    let mut split = images(fmnist.shape, 3 * BATCH, 21);
    split.labels = (0..split.len() as u32).map(|i| i * 7 % 10).collect();
    let split = Arc::new(split);
    let aug = Augmenter::new(fmnist.cfg, &Stats::compute(&split), 5).expect("config");
    let loader = Loader::new(split, aug.clone(), LoaderConfig::train(BATCH, 8)).expect("loader");
    // One emulator library for both: the augmented program's kernels are
    // the plain program's followed by the augmentation kernel.
    let mut p = netc::backend::cuda::generate(&g, BATCH).unwrap();
    attach(&mut p, &aug.plan()).unwrap();
    let emu = Rc::new(build("augment-step", &p.source, &p.kernels));
    let open = |want_aug: bool| {
        let emu = emu.clone();
        let source = p.source.clone();
        move |q: &netc::backend::cuda::CudaProgram| {
            assert_eq!(q.source == source, want_aug, "the augmented program");
            assert!(source.starts_with(&q.source));
            Ok(EmuDevice::new(emu, q))
        }
    };
    let cpu = || CpuExec::new(g.clone(), 3).unwrap();
    let mut plain = CudaStep::new(cpu(), BATCH, open(false)).unwrap();
    let mut dev = CudaStep::with_augment(cpu(), BATCH, &aug.plan(), open(true)).unwrap();
    for step in 0..2u64 {
        let host = loader.batch(0, step as usize).expect("batch");
        let raw = loader.raw_batch(0, step as usize).expect("raw batch");
        assert!(
            plain
                .train_step_bytes(&raw.images, &raw.params, &raw.labels, 0.02, step)
                .is_err()
        );
        assert!(
            dev.train_step(&host.images, &host.labels, 0.02, step)
                .is_err()
        );
        assert!(
            dev.train_step_bytes(&raw.images[1..], &raw.params, &raw.labels, 0.02, step)
                .is_err()
        );
        assert!(
            dev.train_step_bytes(&raw.images, &raw.params[1..], &raw.labels, 0.02, step)
                .is_err()
        );
        let a = plain
            .train_step(&host.images, &host.labels, 0.02, step)
            .unwrap();
        let b = dev
            .train_step_bytes(&raw.images, &raw.params, &raw.labels, 0.02, step)
            .unwrap();
        assert!(a.loss.is_finite());
        assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "step {step}");
        assert_eq!((a.top1, a.top5), (b.top1, b.top5));
    }
    let want: Vec<(String, Vec<f32>)> = plain
        .state()
        .unwrap()
        .into_iter()
        .map(|(n, _, v)| (n, v.to_vec()))
        .collect();
    let got = dev.state().unwrap();
    assert_eq!(got.len(), want.len());
    for ((gn, _, gv), (wn, wv)) in got.iter().zip(&want) {
        assert_eq!(gn, wn);
        same_bits(gv, wv, gn);
    }
}
