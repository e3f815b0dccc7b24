//! A bounded mutation fuzzer over the files in `networks/` and `tests/bad/`:
//! no input may panic or hang the front end, the formatter, or the
//! printers. `NETC_FUZZ_ITERS` sets the number of mutants (CI runs more);
//! the run is deterministic for a given `NETC_FUZZ_SEED`. A failing input
//! is written to `target/fuzz-failure.net` to reproduce with `netc check`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::time::Duration;

use netc::rng::Rng;

const TOKENS: &[&str] = &[
    "network",
    "input",
    "let",
    "towers",
    "across",
    "train",
    "class",
    "true",
    "false",
    "conv",
    "relu",
    "lrn",
    "maxpool",
    "dense",
    "dropout",
    "concat",
    "softmax_xent",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "=",
    "->",
    ".",
    "//",
    "\n",
    " ",
    "\"",
    "0",
    "-1",
    "1e308",
    "1e309",
    "99999999999999999999",
    "0.5",
    "3",
    "2",
    "4294967296",
    "image",
    "label",
    "conv1",
    "fc6",
    "x",
    "é",
    "\u{0}",
    "batch",
    "sgd",
    "init",
    "data",
    "schedule",
    "plateau(",
    "normal(0, 0.01)",
    "[[[[",
    "]]]]",
    "across(across(",
];

fn mutate(src: &str, rng: &mut Rng) -> String {
    let mut s: Vec<char> = src.chars().collect();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = s.len().max(1) as u64;
        let at = rng.below(len + 1) as usize;
        let at = at.min(s.len());
        match rng.below(6) {
            0 => {
                let n = (rng.below(40) as usize).min(s.len() - at);
                s.drain(at..at + n);
            }
            1 | 2 => {
                let t = TOKENS[rng.below(TOKENS.len() as u64) as usize];
                for (k, c) in t.chars().enumerate() {
                    s.insert(at + k, c);
                }
            }
            3 => {
                let n = (rng.below(80) as usize).min(s.len() - at);
                let piece: Vec<char> = s[at..at + n].to_vec();
                let to = (rng.below(s.len() as u64 + 1) as usize).min(s.len());
                for (k, c) in piece.into_iter().enumerate() {
                    s.insert(to + k, c);
                }
            }
            4 => {
                // Replace a digit run by an extreme number.
                if let Some(p) = (at..s.len()).find(|&i| s[i].is_ascii_digit()) {
                    let mut e = p;
                    while e < s.len() && (s[e].is_ascii_digit() || s[e] == '.') {
                        e += 1;
                    }
                    let t =
                        ["0", "-3", "100000000000", "1e300", "0.0001", "7"][rng.below(6) as usize];
                    s.splice(p..e, t.chars());
                }
            }
            _ => {
                if at < s.len() {
                    s[at] = char::from_u32(rng.below(0x80) as u32).unwrap_or('x');
                }
            }
        }
    }
    s.into_iter().collect()
}

/// Runs everything a user can run on a source text, without a backend.
fn exercise(src: &str) {
    if let Ok(ast) = netc::syntax::parse(src) {
        let out = netc::syntax::fmt::format(&ast, src);
        let again = netc::syntax::parse(&out).expect("fmt output must parse");
        assert_eq!(
            netc::syntax::fmt::format(&again, &out),
            out,
            "fmt must be idempotent"
        );
    }
    match netc::frontend::compile(src) {
        Ok(c) => {
            let g = &c.module.graph;
            netc::ir::verify::verify(g).expect("lowered graph verifies");
            let _ = netc::ir::table::render(g);
            let _ = netc::ir::print::print(g, Default::default());
            let _ = netc::ir::dot::dot(g);
            let _ = netc::ir::print::to_yaml(g);
            let _ = netc::diag::render("f.net", src, &c.warnings);
        }
        Err(d) => {
            let _ = netc::diag::render("f.net", src, &[d]);
        }
    }
}

#[test]
fn mutants_never_panic_or_hang() {
    let iters: u64 = std::env::var("NETC_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let seed: u64 = std::env::var("NETC_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut corpus = Vec::new();
    for dir in ["networks", "tests/bad"] {
        for e in std::fs::read_dir(dir).unwrap() {
            corpus.push(std::fs::read_to_string(e.unwrap().path()).unwrap());
        }
    }
    assert!(corpus.len() > 10);
    let (tx, rx) = mpsc::channel::<Option<String>>();
    let worker = std::thread::spawn(move || {
        let mut rng = Rng::new(seed, 0xF022);
        let prev_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let mut failure = None;
        for _ in 0..iters {
            let base = &corpus[rng.below(corpus.len() as u64) as usize];
            let m = mutate(base, &mut rng);
            let _ = tx.send(Some(m.clone()));
            if catch_unwind(AssertUnwindSafe(|| exercise(&m))).is_err() {
                failure = Some(m);
                break;
            }
        }
        std::panic::set_hook(prev_hook);
        let _ = tx.send(None);
        failure
    });
    let mut last = String::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(m)) => last = m,
            Ok(None) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = std::fs::write("target/fuzz-failure.net", &last);
                panic!("an input took over 20 s (saved to target/fuzz-failure.net)");
            }
        }
    }
    if let Some(m) = worker.join().unwrap() {
        let _ = std::fs::write("target/fuzz-failure.net", &m);
        exercise(&m); // re-run with the panic message visible
        panic!("an input panicked (saved to target/fuzz-failure.net)");
    }
    println!("fuzz: {iters} mutants, seed {seed}, no panic or hang");
}
