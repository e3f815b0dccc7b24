//! The README's and the book's examples, run and compared: every ```console
//! block of `README.md` and `docs/src/*.md` (lines `$ command`, then what it
//! prints, stdout and stderr together) is run by trycmd with `netc` and
//! compared with the block. `[..]` in a block matches any text within a line
//! (times, rates, paths) and `...` on a line of its own any lines.
//!
//! Each Markdown file runs in a scratch folder of its own that links the
//! repository's inputs (`networks/`, `data/`, `tests/bad/`, `scripts/`) and
//! holds a copy of `examples/`' specs, networks and images, so commands that
//! write (`out/`, a sweep's folder) never touch a tracked file, and the files
//! run one after another (their commands share a folder, so order matters).
//!
//! After changing an output on purpose:
//! `TRYCMD=overwrite cargo test --release --test docs`, then read the diff
//! and put back the wildcards for what varies.
//!
//! Long examples (the main job) are recorded by `scripts/docs-main-job.sh`
//! instead; the tests below check that the README quotes that recording.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown files whose console blocks are tests: the README and every
/// chapter of the book. A file without a console block runs nothing.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    let mut chapters: Vec<PathBuf> = std::fs::read_dir(root().join("docs/src"))
        .expect("docs/src")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    chapters.sort();
    docs.extend(chapters);
    docs
}

fn console_blocks(text: &str) -> usize {
    text.lines()
        .filter(|l| {
            let info = l.trim_start_matches('`');
            l.len() - info.len() >= 3 && info.starts_with("console") && !info.contains("ignore")
        })
        .count()
}

/// A scratch folder for one document: links to the inputs, a copy of the
/// examples' small files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netc-docs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    for link in ["networks", "data", "scripts"] {
        std::os::unix::fs::symlink(root().join(link), dir.join(link)).unwrap();
    }
    std::os::unix::fs::symlink(root().join("tests/bad"), dir.join("tests/bad")).unwrap();
    std::os::unix::fs::symlink(root().join("tests/nets"), dir.join("tests/nets")).unwrap();
    copy_small(&root().join("examples"), &dir.join("examples"));
    dir
}

/// Copies the files of `from` (and of its `images/` folder), not the
/// results folders a sweep writes: a sweep in the scratch folder starts
/// afresh instead of finding finished variants.
fn copy_small(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_file() {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        } else if e.file_name() == "images" {
            copy_small(&p, &to.join("images"));
        }
    }
}

fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{program} is not on PATH; the book's examples run it"))
}

#[test]
fn every_documented_command_prints_what_the_docs_show() {
    let docs = documents();
    let mut ran = 0;
    let mut failed = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        if console_blocks(&text) == 0 {
            continue;
        }
        ran += 1;
        let name = doc.file_stem().unwrap().to_string_lossy().into_owned();
        let dir = scratch(&name);
        // One test function in this binary changes the working folder, and
        // the documents run one at a time; the other tests use absolute paths.
        std::env::set_current_dir(&dir).unwrap();
        let outcome = std::panic::catch_unwind(|| {
            let cases = trycmd::TestCases::new();
            cases
                .register_bin("netc", PathBuf::from(env!("CARGO_BIN_EXE_netc")))
                .register_bin("python3", which("python3"))
                .env("NO_COLOR", "1")
                .case(doc);
            cases.run();
        });
        std::env::set_current_dir(root()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        if outcome.is_err() {
            failed.push(doc.display().to_string());
        }
    }
    assert!(ran >= 2, "only {ran} documents have console blocks");
    assert!(
        failed.is_empty(),
        "these documents show output their commands no longer print (see above):\n{}",
        failed.join("\n")
    );
}

/// The README quotes the main job's recorded output
/// (`docs/src/recorded/main-job.txt`, written by `scripts/docs-main-job.sh`)
/// line for line.
#[test]
fn the_readme_quotes_the_recorded_main_job() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let recorded = std::fs::read_to_string(root().join("docs/src/recorded/main-job.txt")).unwrap();
    let epochs: Vec<&str> = recorded
        .lines()
        .filter(|l| l.starts_with("epoch "))
        .collect();
    assert_eq!(epochs.len(), 12, "the main job runs 12 epochs");
    // The prose states the recorded figure.
    let last = epochs[11]
        .split("  top-1 error ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the last epoch's top-1 error");
    assert!(
        readme.contains(&format!("epochs reach {last}")),
        "the README's prose does not state the recorded figure {last}"
    );
    for line in recorded
        .lines()
        .filter(|l| l.starts_with("epoch ") || l.starts_with("metrics: ") || l.starts_with("   "))
    {
        assert!(
            readme.contains(line),
            "README.md does not quote this line of docs/src/recorded/main-job.txt:\n{line}"
        );
    }
}

/// The book's first example network is `examples/tiny.net`, which the
/// language chapter shows and trains.
#[test]
fn the_language_chapters_first_network_is_examples_tiny_net() {
    let chapter = std::fs::read_to_string(root().join("docs/src/language.md")).unwrap();
    let tiny = std::fs::read_to_string(root().join("examples/tiny.net")).unwrap();
    let start = chapter.find("```net\n").expect("a net block") + "```net\n".len();
    let end = start + chapter[start..].find("```").unwrap();
    assert_eq!(
        &chapter[start..end],
        tiny,
        "docs/src/language.md's first block"
    );
}

/// Links between the README and the book's chapters name files that exist,
/// and anchors that are headings of the file they name.
#[test]
fn links_between_the_documents_resolve() {
    let mut docs = documents();
    docs.push(root().join("docs/src/SUMMARY.md"));
    let mut bad = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for (target, anchor) in links(&text) {
            let file = if target.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(&target)
            };
            if !file.exists() {
                bad.push(format!("{}: {target}: no such file", doc.display()));
                continue;
            }
            if let Some(anchor) = anchor
                && file.extension().is_some_and(|x| x == "md")
                && !headings(&std::fs::read_to_string(&file).unwrap()).contains(&anchor)
            {
                bad.push(format!(
                    "{}: {target}#{anchor}: no such heading",
                    doc.display()
                ));
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

/// The relative links `[text](target)` and `![alt](target)` outside code.
fn links(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
            continue;
        }
        if fence {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(j) = rest.find(')') else { break };
            let target = &rest[..j];
            rest = &rest[j..];
            if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            match target.split_once('#') {
                Some((f, a)) => out.push((f.to_string(), Some(a.to_string()))),
                None => out.push((target.to_string(), None)),
            }
        }
    }
    out
}

/// The anchors of a Markdown file's headings, as code hosts and mdBook make
/// them: lower case, spaces to hyphens, punctuation but `-` and `_` dropped.
fn headings(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
            continue;
        }
        if fence || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        out.push(slug);
    }
    out
}

/// The CUDA chapter's error without a driver (a `text` block, since on a
/// machine with the driver the same command trains): compared wherever
/// `libcuda.so` cannot be loaded, as on CI's machines.
#[test]
fn the_cuda_chapters_error_without_a_driver() {
    let chapter = std::fs::read_to_string(root().join("docs/src/cuda.md")).unwrap();
    let cmd = "$ netc train networks/alexnet-fmnist.net --backend cuda\n";
    let start = chapter.find(cmd).expect("the example in docs/src/cuda.md") + cmd.len();
    let expected = &chapter[start..start + chapter[start..].find("```").unwrap()];
    // SAFETY: loading the driver library runs its initialisers, as netc does.
    let driver = ["libcuda.so", "libcuda.so.1"]
        .iter()
        .any(|name| unsafe { libloading::Library::new(*name) }.is_ok());
    if driver {
        eprintln!(
            "NOT COMPARED: libcuda.so loads on this machine, so docs/src/cuda.md's \
             error without a driver cannot be reproduced here"
        );
        return;
    }
    let dir = scratch("cuda-error");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(["train", "networks/alexnet-fmnist.net", "--backend", "cuda"])
        .current_dir(&dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let printed =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(printed, expected);
}
