//! A bounded fuzzer over random *networks*: shapes, strides, padding (wider
//! than the kernel too), pool sizes that do not tile their input, odd and
//! even LRN sizes, towers with `across`, concatenations, dropout. Each one
//! goes through `frontend::check`; a network it refuses must be refused
//! with a diagnostic, and one it accepts must run: one training step and
//! one evaluation on the CPU executor, fused or not (the rule that `check`
//! accepts exactly what `train` runs). A sample of the accepted ones also
//! has its CUDA step generated, compiled by NVRTC when it can be loaded,
//! and run in the emulator against the CPU executor.
//!
//! `NETC_FUZZ_NETS` sets the number of networks (default 300) and
//! `NETC_FUZZ_NETS_CUDA` the size of the emulated sample (default 4; CI
//! runs more of both); `NETC_FUZZ_SEED` the seed. A failing network is
//! written to `target/fuzz-nets-failure.net` to reproduce with `netc check`
//! and `netc train`.

mod emu;

use std::panic::{AssertUnwindSafe, catch_unwind};

use netc::backend::cpu::exec::CpuExec;
use netc::backend::cuda;
use netc::rng::Rng;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A random network's source (valid or not: the shapes are tracked only
/// roughly, so some kernels overrun their input and `check` must say so).
fn network(r: &mut Rng) -> String {
    let pick = |r: &mut Rng, lo: u64, hi: u64| lo + r.below(hi - lo + 1);
    let c = pick(r, 1, 3);
    let mut h = pick(r, 3, 14);
    let mut w = if r.below(3) == 0 { pick(r, 3, 14) } else { h };
    let classes = pick(r, 2, 6);
    let towers = if r.below(3) == 0 { 2 } else { 1 };
    let mut s =
        format!("network fz {{\n  input image: [{c}, {h}, {w}]\n  input label: class({classes})\n");
    let ind = if towers > 1 {
        s.push_str(&format!("  towers {towers} {{\n"));
        "    "
    } else {
        "  "
    };
    let mut prev = "image".to_string();
    let mut image_like = true;
    let layers = pick(r, 1, 4);
    for i in 0..layers {
        let name = format!("b{i}");
        // `across` reads every tower's output (not for the input).
        let src = if towers > 1 && prev != "image" && r.below(2) == 0 {
            format!("across({prev})")
        } else {
            prev.clone()
        };
        let mut chain;
        if image_like && r.below(5) != 0 {
            let size = pick(r, 1, 5);
            let stride = pick(r, 1, 3);
            let pad = if r.below(4) == 0 {
                pick(r, 0, 6)
            } else {
                pick(r, 0, 2)
            };
            let filters = towers * pick(r, 1, 4);
            if r.below(6) == 0 {
                // Two branches of the same spatial size, concatenated.
                let p = size / 2;
                let (sz, pd) = if size % 2 == 1 {
                    (size, p)
                } else {
                    (size + 1, p)
                };
                s.push_str(&format!(
                    "{ind}{name}a = conv({src}, filters: {filters}, size: {sz}, pad: {pd}) -> relu\n{ind}{name}b = conv({src}, filters: {filters}, size: 1)\n"
                ));
                chain = format!("concat({name}a, {name}b)");
            } else {
                chain = format!(
                    "conv({src}, filters: {filters}, size: {size}, stride: {stride}, pad: {pad})"
                );
                let (nh, nw) = (
                    (h + 2 * pad).saturating_sub(size) / stride + 1,
                    (w + 2 * pad).saturating_sub(size) / stride + 1,
                );
                h = nh;
                w = nw;
            }
            if r.below(3) != 0 {
                chain.push_str(" -> relu");
            }
            if r.below(3) == 0 {
                let n = pick(r, 1, 5);
                chain.push_str(&format!(" -> lrn(size: {n}, alpha: 0.1, beta: 0.75, k: 2)"));
            }
            if r.below(2) == 0 && h.min(w) >= 2 {
                let size = pick(r, 1, 3.min(h.min(w)));
                let stride = pick(r, 1, 3);
                chain.push_str(&format!(" -> maxpool(size: {size}, stride: {stride})"));
                h = h.saturating_sub(size) / stride + 1;
                w = w.saturating_sub(size) / stride + 1;
            }
        } else {
            let units = towers * pick(r, 1, 6);
            chain = format!("dense({src}, units: {units})");
            if r.below(2) == 0 {
                chain.push_str(" -> relu");
            }
            if r.below(3) == 0 {
                chain.push_str(" -> dropout(rate: 0.5)");
            }
            image_like = false;
        }
        s.push_str(&format!("{ind}{name} = {chain}\n"));
        prev = name;
    }
    let last = if towers > 1 {
        s.push_str("  }\n");
        format!("across({prev})")
    } else {
        prev
    };
    s.push_str(&format!(
        "  out = dense({last}, units: {classes})\n  loss = softmax_xent(out, label)\n}}\n"
    ));
    let test = if r.below(4) == 0 {
        "ten_crop"
    } else {
        "center"
    };
    s.push_str(&format!(
        "train {{\n  init {{ weight: he  bias: 0.1 }}\n  data {{ test: {test} }}\n}}\n"
    ));
    s
}

/// What became of one network.
#[derive(Debug, PartialEq)]
enum Fate {
    Refused,
    Ran,
}

/// Checks `src`; if accepted, a training step and an evaluation on the CPU.
fn run_cpu(src: &str, r: &mut Rng) -> Result<Fate, String> {
    let c = match netc::frontend::check(src) {
        Err(d) => {
            if d.code.is_none() || d.message.is_empty() {
                return Err(format!("refused without a diagnostic code: {d:?}"));
            }
            return Ok(Fate::Refused);
        }
        Ok(c) => c,
    };
    let fused = r.below(2) == 0;
    let g = netc::passes::pipeline::training_step(&c.module.graph, &c.module.train.sgd, fused)
        .map_err(|e| format!("accepted, but the step does not build: {e}"))?;
    let mut exec = CpuExec::<f32>::planned(g, r.next_u64())
        .map_err(|e| format!("accepted, but the executor refuses it: {e}"))?;
    let n = 1 + r.below(3) as usize;
    let per = exec.image_len();
    let images: Vec<f32> = (0..n * per).map(|_| r.normal() as f32).collect();
    let label = exec.graph().training_io().map_err(|e| format!("no {e}"))?.1;
    let netc::ir::Ty::Labels { classes } = exec.graph().node(label).ty else {
        return Err("the label input has no classes".into());
    };
    let labels: Vec<u32> = (0..n).map(|_| r.below(classes.max(1)) as u32).collect();
    let s = exec
        .train_step(&images, &labels, 0.01, 0)
        .map_err(|e| format!("accepted, but the step fails: {e}"))?;
    if !s.loss.is_finite() {
        return Err(format!("the first step's loss is {}", s.loss));
    }
    exec.eval_batch(&images, &labels)
        .map_err(|e| format!("accepted, but evaluation fails: {e}"))?;
    Ok(Fate::Ran)
}

/// The CUDA step of an accepted network: NVRTC (when it loads) and the
/// emulator against the CPU executor.
fn run_cuda(tag: &str, src: &str, fused: bool, nvrtc: bool) {
    if nvrtc {
        let c = netc::frontend::check(src).unwrap();
        let g = netc::passes::pipeline::training_step(&c.module.graph, &c.module.train.sgd, fused)
            .unwrap();
        let p = cuda::generate(&g, 4).unwrap();
        cuda::nvrtc::compile(&p.source, "sm_90").unwrap_or_else(|e| panic!("NVRTC: {e}"));
    }
    emu::step_matches(tag, src, fused, 1);
}

#[test]
fn random_networks_that_check_accepts_train_and_evaluate() {
    let total = env("NETC_FUZZ_NETS", 300);
    let want_cuda = env("NETC_FUZZ_NETS_CUDA", 4);
    let seed = env("NETC_FUZZ_SEED", 13);
    let gxx = emu::have_gxx();
    let nvrtc = cuda::nvrtc::available();
    if !nvrtc {
        let msg = "NVRTC cannot be loaded: the CUDA sample is emulated but not compiled by NVRTC";
        if std::env::var("NETC_REQUIRE_NVRTC").as_deref() == Ok("1") {
            panic!("{msg}, and NETC_REQUIRE_NVRTC=1");
        }
        eprintln!("note: {msg}");
    }
    if !gxx {
        eprintln!("note: no g++: the emulated CUDA sample is skipped");
    }
    let mut r = Rng::new(seed, 0x6e65_7473);
    let (mut ran, mut refused, mut emulated) = (0u64, 0u64, 0u64);
    let mut failures: Vec<(String, String)> = Vec::new();
    // Every `every`-th accepted network goes through the CUDA step.
    let every = (total / 2 / want_cuda.max(1)).max(1);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..total {
        let src = network(&mut r);
        let mut rr = Rng::new(seed, i);
        match catch_unwind(AssertUnwindSafe(|| run_cpu(&src, &mut rr))) {
            Ok(Ok(Fate::Refused)) => refused += 1,
            Ok(Ok(Fate::Ran)) => {
                ran += 1;
                if gxx && emulated < want_cuda && ran % every == 0 {
                    let fused = rr.below(2) == 0;
                    let tag = format!("fuzz-{i}");
                    if let Err(p) =
                        catch_unwind(AssertUnwindSafe(|| run_cuda(&tag, &src, fused, nvrtc)))
                    {
                        failures.push((
                            src.clone(),
                            format!("CUDA step (fused {fused}): {}", panic_text(&p)),
                        ));
                    }
                    emulated += 1;
                }
            }
            Ok(Err(e)) => failures.push((src.clone(), e)),
            Err(p) => failures.push((src.clone(), format!("panic: {}", panic_text(&p)))),
        }
    }
    std::panic::set_hook(hook);
    eprintln!(
        "{total} random networks: {ran} trained and evaluated, {refused} refused with a diagnostic, {emulated} CUDA steps emulated against the CPU, {} failures",
        failures.len()
    );
    if let Some((src, why)) = failures.first() {
        let path =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../fuzz-nets-failure.net");
        let _ = std::fs::write(&path, src);
        panic!(
            "{} of {total} networks failed; the first ({why}) is in {}:\n{src}",
            failures.len(),
            path.display()
        );
    }
    assert!(
        ran >= total / 2,
        "only {ran} of {total} networks were accepted"
    );
    assert!(
        !gxx || emulated >= want_cuda.min(ran),
        "only {emulated} emulated"
    );
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into())
}
