//! The configuration files the project ships pass promfed's own checks.

use std::path::Path;

use crate::support::*;

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn shipped_settings_example_cluster_and_base_files_pass_promfed_check() {
    require(PROMTOOL);
    require(AMTOOL);
    let s = Setup::new();
    // The shipped settings, pointed at a scratch tree instead of /etc.
    let shipped = std::fs::read_to_string(repo("etc/promfed/promfed.toml")).unwrap();
    // As shipped, with its /etc paths: the settings themselves load (what
    // render makes of this machine's /etc does not matter here).
    let as_shipped = std::process::Command::new(env!("CARGO_BIN_EXE_promfed"))
        .arg("--config")
        .arg(repo("etc/promfed/promfed.toml"))
        .arg("render")
        .output()
        .unwrap();
    assert!(
        !stderr(&as_shipped).contains("problem in") && !stderr(&as_shipped).contains("problems in"),
        "the shipped promfed.toml is invalid (needs the `prometheus` user: run scripts/test): {}",
        stderr(&as_shipped)
    );
    // The shipped base names the rules where the packages install them;
    // here, the repository's copy, which promtool then reads.
    let base = std::fs::read_to_string(repo("etc/promfed/prometheus.base.yml")).unwrap();
    assert!(
        base.contains("  - /usr/share/promfed/rules/promfed.rules.yml\n"),
        "{base}"
    );
    s.write(
        "etc/shipped.base.yml",
        &base.replace(
            "/usr/share/promfed/rules/promfed.rules.yml",
            repo("share/rules/promfed.rules.yml").to_str().unwrap(),
        ),
    );
    let settings = shipped
        .replace(
            "#clusters_dir = \"/etc/promfed.d\"",
            "clusters_dir = \"promfed.d\"",
        )
        .replace(
            "#state_dir = \"/var/lib/promfed\"",
            "state_dir = \"../state\"",
        )
        .replace(
            "#config_file = \"/etc/prometheus/prometheus.yml\"",
            "config_file = \"../prometheus/prometheus.yml\"",
        )
        .replace(
            "#base_file = \"/etc/promfed/prometheus.base.yml\"",
            &format!(
                "base_file = \"{}\"",
                s.path("etc/shipped.base.yml").display()
            ),
        )
        .replace("#user = \"prometheus\"", "user = \"root\"")
        .replace("#[alertmanager]", "[alertmanager]")
        .replace(
            "#config_file = \"/etc/prometheus/alertmanager.yml\"",
            "config_file = \"../prometheus/alertmanager.yml\"",
        )
        .replace(
            "#base_file = \"/etc/promfed/alertmanager.base.yml\"",
            &format!(
                "base_file = \"{}\"",
                repo("etc/promfed/alertmanager.base.yml").display()
            ),
        )
        .replace(
            "#amtool = \"/usr/bin/amtool\"",
            &format!("amtool = \"{AMTOOL}\""),
        )
        .replace(
            "#[shard]\n#members = [\"mon-a\", \"mon-b\", \"mon-c\"]\n#self = \"mon-a\"\n#replication = 2\n#replica_label = \"replica\"",
            // mon-b: one of the two hosts that scrape `example`.
            "[shard]\nmembers = [\"mon-a\", \"mon-b\", \"mon-c\"]\nself = \"mon-b\"\nreplication = 2\nreplica_label = \"replica\"",
        );
    assert!(
        settings.contains("\n[shard]\n"),
        "the shipped [shard] example is enabled"
    );
    // The [defaults] example, enabled: every line of it, to the end.
    let at = settings
        .find("#[defaults]\n")
        .expect("a [defaults] example");
    let defaults: String = settings[at..]
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix('#').unwrap_or(l)))
        .collect();
    let settings = format!("{}{defaults}", &settings[..at]);
    assert_ne!(settings, shipped);
    s.write("etc/promfed.toml", &settings);
    // The example, enabled, with credentials in place.
    let example = std::fs::read_to_string(repo("etc/promfed.d/example.toml.example"))
        .unwrap()
        .replace("#receiver = \"team-stage\"", "receiver = \"default\"")
        .replace("#[federate]\n#match", "[federate]\nmatch");
    s.write("etc/promfed.d/example.toml", &example);
    s.write("etc/promfed.d/example/token", "t\n");
    s.write("etc/promfed.d/example/ca.crt", TEST_CA);
    std::fs::copy(repo("etc/promfed.d/README"), s.path("etc/promfed.d/README")).unwrap();
    std::fs::copy(
        repo("etc/promfed.d/example.toml.example"),
        s.path("etc/promfed.d/example.toml.example"),
    )
    .unwrap();

    let out = s.promfed(&["check"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("cluster example"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("candidate passes the gate"),
        "{}",
        stdout(&out)
    );
    let rendered = stdout(&s.promfed(&["render"]));
    assert!(
        rendered.contains("job_name: prometheus\n"),
        "the base's own job is kept"
    );
    assert!(rendered.contains("replica: \"mon-b\""), "{rendered}");
    assert!(rendered.contains("job_name: promfed/example/node-exporter"));
    assert!(
        rendered
            .contains("/api/v1/namespaces/istio-system/services/prometheus:9090/proxy/federate"),
        "the example's [federate], enabled"
    );
    assert!(
        rendered.contains("target_label: team\n      replacement: platform"),
        "the [defaults] example's label: {rendered}"
    );
    let shown = stdout(&s.promfed(&["render", "example"]));
    assert!(
        shown.contains("labels.team = \"platform\"") && shown.contains(", [defaults]"),
        "{shown}"
    );
    assert!(
        stdout(&out).contains("alertmanager: candidate passes the gate"),
        "the shipped Alertmanager base passes amtool: {}",
        stdout(&out)
    );
}
