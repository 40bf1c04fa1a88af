//! Golden rendering tests: each `tests/golden/NN-case/etc` is a settings
//! folder; `promfed render` must print `expected.yml` byte for byte (with the
//! temporary root shown as `@ROOT@`), twice the same, and real promtool must
//! accept it (or refuse it as the case's `promtool-rejects` file says).
//! A case's `state/` folder, if any, is copied to the state folder first
//! (the monitors `[monitors]` renders jobs of, as discovery kept them).
//! `PROMFED_BLESS=1` rewrites the expected files after a change
//! that was meant.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub(crate) fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 7, "golden cases are missing");
    cases
}

fn render(case: &Path) -> (String, tempfile::TempDir) {
    render_with(case, |settings| settings.to_string())
}

/// The same, after `edit` rewrote the case's promfed.toml.
pub(crate) fn render_with(
    case: &Path,
    edit: impl Fn(&str) -> String,
) -> (String, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    copy_tree(&case.join("etc"), &root.path().join("etc"));
    // A case may bring what discovery kept (`state/`, e.g. the monitors
    // `[monitors]` renders jobs of).
    if case.join("state").is_dir() {
        copy_tree(&case.join("state"), &root.path().join("state"));
    }
    let settings = root.path().join("etc/promfed.toml");
    let edited = edit(&std::fs::read_to_string(&settings).unwrap());
    std::fs::write(&settings, edited).unwrap();
    std::fs::create_dir_all(root.path().join("prometheus")).unwrap();
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_promfed"))
            .arg("--config")
            .arg(root.path().join("etc/promfed.toml"))
            .arg("render")
            .output()
            .unwrap();
        assert_exit(&out, 0);
        stdout(&out)
    };
    let first = run();
    assert_eq!(
        first,
        run(),
        "{}: rendering is not deterministic",
        case.display()
    );
    (first.replace(root.path().to_str().unwrap(), "@ROOT@"), root)
}

#[test]
fn every_case_renders_as_expected_and_passes_promtool() {
    require(PROMTOOL);
    let mut failures = Vec::new();
    for case in cases() {
        let (rendered, root) = render(&case);
        let expected_path = case.join("expected.yml");
        if std::env::var_os("PROMFED_BLESS").is_some() {
            std::fs::write(&expected_path, &rendered).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if rendered != expected {
            failures.push(format!(
                "{}: rendered output differs from expected.yml\n--- expected\n{expected}\n--- rendered\n{rendered}",
                case.display()
            ));
        }

        // Real promtool judges the same bytes, at the place they would go.
        let config = root.path().join("prometheus/prometheus.yml");
        std::fs::write(
            &config,
            rendered.replace("@ROOT@", root.path().to_str().unwrap()),
        )
        .unwrap();
        let out = Command::new(PROMTOOL)
            .args(["check", "config"])
            .arg(&config)
            .output()
            .unwrap();
        // A case that Debian's promtool must refuse (kubernetes_sd: 2.42 is
        // built without Kubernetes discovery) says so in `promtool-rejects`,
        // which holds the text promtool's refusal must contain.
        if let Ok(reason) = std::fs::read_to_string(case.join("promtool-rejects")) {
            let reason = reason.trim();
            if out.status.success() || !stderr(&out).contains(reason) {
                failures.push(format!(
                    "{}: promtool should refuse it with `{reason}`; it said:\n{}",
                    case.display(),
                    stderr(&out)
                ));
            }
            // Debian 13's promtool, built with Kubernetes discovery, accepts it.
            require(TRIXIE_PROMTOOL);
            let out = Command::new(TRIXIE_PROMTOOL)
                .args(["check", "config"])
                .arg(&config)
                .output()
                .unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "{}: Prometheus 2.53's promtool rejects it:\n{}{}",
                    case.display(),
                    stdout(&out),
                    stderr(&out)
                ));
            }
        } else if !out.status.success() {
            failures.push(format!(
                "{}: promtool rejects it:\n{}{}",
                case.display(),
                stdout(&out),
                stderr(&out)
            ));
        } else {
            // Debian 13's 2.53 takes every case 2.42 takes (3.5: prometheus3.rs).
            require(TRIXIE_PROMTOOL);
            let out = Command::new(TRIXIE_PROMTOOL)
                .args(["check", "config"])
                .arg(&config)
                .output()
                .unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "{}: Prometheus 2.53's promtool rejects it:\n{}{}",
                    case.display(),
                    stdout(&out),
                    stderr(&out)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
