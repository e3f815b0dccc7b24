//! Every file in `tests/bad/` (read as `netc check` reads it) starts with `// expect: CODE LINE:COL`: the
//! diagnostic it must produce and where its primary label must point. The
//! rendered diagnostic of each is also snapshotted.

use netc::frontend;

fn expectation(src: &str) -> (String, usize, usize) {
    let first = src.lines().next().expect("empty bad file");
    let rest = first
        .strip_prefix("// expect: ")
        .expect("first line must be `// expect: CODE L:C`");
    let (code, pos) = rest.split_once(' ').expect("`CODE L:C`");
    let (l, c) = pos.split_once(':').expect("`L:C`");
    (
        code.to_string(),
        l.parse().expect("line"),
        c.parse().expect("col"),
    )
}

#[test]
fn bad_inputs_point_at_the_right_span() {
    let mut checked = 0;
    let mut failures = Vec::new();
    insta::glob!("bad/*.net", |path| {
        let src = std::fs::read_to_string(path).unwrap();
        let (code, line, col) = expectation(&src);
        let name = format!("tests/bad/{}", path.file_name().unwrap().to_string_lossy());
        let diags = match frontend::check(&src) {
            Err(d) => vec![d],
            Ok(c) => c.warnings,
        };
        assert!(!diags.is_empty(), "{name}: no diagnostic at all");
        let d = &diags[0];
        if d.code.as_deref() != Some(code.as_str()) {
            failures.push(format!(
                "{name}: expected {code}, got {:?}: {}",
                d.code, d.message
            ));
        }
        let label = d
            .labels
            .iter()
            .find(|l| l.style == codespan_reporting::diagnostic::LabelStyle::Primary);
        let label = label.unwrap_or_else(|| panic!("{name}: no primary label"));
        let (l, c) = netc::span::line_col(&src, label.range.start);
        if (l, c) != (line, col) {
            failures.push(format!(
                "{name}: label at {l}:{c}, expected {line}:{col}: {}",
                d.message
            ));
        }
        assert!(
            !d.notes.is_empty() && d.notes[0].starts_with("help: "),
            "{name}: no help line"
        );
        insta::assert_snapshot!(netc::diag::render(&name, &src, &diags));
        checked += 1;
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 30, "only {checked} bad inputs found");
}
