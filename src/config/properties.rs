//! Property tests: whatever bytes an operator (or an attacker) puts in a
//! cluster file, the settings or a base file, parsing never panics and ends
//! quickly. Case counts are bounded so that `scripts/test` stays fast.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::cluster::Cluster;
use super::diagnostic::SourceText;
use super::settings::Settings;
use crate::render::Base;

/// Generous: a parse takes microseconds; this only catches the pathological.
const BOUND: Duration = Duration::from_secs(2);

const CLUSTER: &str = "name = \"prod\"\napi_server = \"https://10.0.0.1:6443/k8s\"\ntoken_file = \"prod/token\"\nca_file = \"prod/ca.crt\"\nlabels = { env = \"prod\", team = \"a$1\" }\nreceiver = \"team\"\n[kubelet]\nscrape_interval = \"1m\"\n[cadvisor]\ndrop_high_cardinality = false\n[node_exporter]\nnamespace = \"monitoring\"\nport = \"metrics\"\n";
const SETTINGS: &str = "clusters_dir = \"promfed.d\"\nstate_dir = \"/var/lib/promfed\"\nscrape_interval = \"30s\"\ndebounce = \"250ms\"\n[prometheus]\nuser = \"root\"\nreload = \"signal\"\npid_file = \"/run/prometheus.pid\"\n[alertmanager]\nuser = \"root\"\nurl = \"http://127.0.0.1:9093\"\n";
const BASE: &str = "# the operator's\nglobal:\n  scrape_interval: 15s\n  external_labels: {monitor: 'ex', version: 1.10}\nalerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['localhost:9093']\nscrape_configs:\n  - job_name: node\n    static_configs: [{targets: [\"localhost:9100\"]}]\n";

fn parse_all(text: &str) {
    let start = Instant::now();
    let _ = Cluster::parse(&SourceText::new("/etc/promfed.d/x.toml", text), "x")
        .map_err(|b| b.problems.iter().map(ToString::to_string).count());
    let _ = Settings::parse(&SourceText::new("/etc/promfed/promfed.toml", text))
        .map_err(|p| p.iter().map(ToString::to_string).count());
    let _ = Base::parse(SourceText::new("/etc/promfed/base.yml", text)).map_err(|d| d.to_string());
    assert!(start.elapsed() < BOUND, "took {:?}", start.elapsed());
}

/// A valid file with a few bytes inserted, deleted or replaced.
fn mutated(valid: &'static str) -> impl Strategy<Value = String> {
    let edits = prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<char>()), 1..8);
    edits.prop_map(move |edits| {
        let mut chars: Vec<char> = valid.chars().collect();
        for (at, kind, c) in edits {
            let i = at.index(chars.len() + 1);
            match kind {
                0 => chars.insert(i, c),
                1 if i < chars.len() => {
                    chars.remove(i);
                }
                _ if i < chars.len() => chars[i] = c,
                _ => chars.push(c),
            }
        }
        chars.into_iter().collect()
    })
}

/// Bytes that look like the files' own syntax, to get past the first error.
fn syntax_soup() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "[",
        "]",
        "{",
        "}",
        "=",
        ":",
        "\"",
        "'",
        "\n",
        " ",
        "#",
        ",",
        "-",
        "a",
        "k",
        "\u{feff}",
        "é",
        "\\",
        "[prometheus]",
        "api_server",
        "labels",
        "scrape_configs",
        "1e3",
        "0x1F",
        "\"\"\"",
        "&a",
        "*a",
        "!!str",
        "---",
    ]);
    prop::collection::vec(pieces, 0..200).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        parse_all(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn syntax_soup_never_panics(text in syntax_soup()) {
        parse_all(&text);
    }

    #[test]
    fn mutated_cluster_files_never_panic(text in mutated(CLUSTER)) {
        parse_all(&text);
    }

    #[test]
    fn mutated_settings_never_panic(text in mutated(SETTINGS)) {
        parse_all(&text);
    }

    #[test]
    fn mutated_base_files_never_panic(text in mutated(BASE)) {
        parse_all(&text);
    }
}
