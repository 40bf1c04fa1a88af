//! `promfed doctor`, `promfed rbac` and `promfed add-cluster` against the
//! fake API server and a real Prometheus: a healthy cluster passes, each
//! planted fault is found and named with its fix, the role `rbac` prints
//! is exactly what `doctor` asks for, and a kubeconfig becomes a cluster.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::support::*;

fn doctor(setup: &Setup, args: &[&str]) -> (i32, String) {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    let out = setup.promfed(&all);
    (out.status.code().unwrap_or(-1), stdout(&out))
}

/// The lines of one verdict (`✔`, `!`, `✘`) of a doctor report.
fn marked<'a>(report: &'a str, mark: &str) -> Vec<&'a str> {
    report
        .lines()
        .filter(|l| l.trim_start().starts_with(mark))
        .collect()
}

/// Asserts a failed check whose line holds `detail` and whose fix line
/// (the next) holds `fix`.
fn assert_fault(report: &str, detail: &str, fix: &str) {
    let lines: Vec<&str> = report.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with('✘') && l.contains(detail))
        .unwrap_or_else(|| panic!("no ✘ line with `{detail}` in:\n{report}"));
    let fix_line = lines.get(at + 1).copied().unwrap_or_default();
    assert!(
        fix_line.trim_start().starts_with("fix:") && fix_line.contains(fix),
        "the fix for `{detail}` should say `{fix}`, it says `{fix_line}`\n{report}"
    );
}

fn jwt(exp: i64) -> String {
    format!(
        "{}.{}.signature",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k"}"#),
        URL_SAFE_NO_PAD.encode(format!(
            r#"{{"iss":"kubernetes/serviceaccount","sub":"system:serviceaccount:monitoring:prometheus","exp":{exp}}}"#
        ))
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A fake cluster `name` with `nodes`, a real node-exporter behind it and a
/// real Prometheus (lifecycle on) that promfed's settings point at.
struct World {
    setup: Setup,
    fake: FakeCluster,
    prometheus: Prometheus,
    _exporter: NodeExporter,
}

fn world(name: &str, nodes: &[&str]) -> World {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let fake = FakeCluster::start(setup.root.path(), name, nodes, &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    World {
        setup,
        fake,
        prometheus,
        _exporter: exporter,
    }
}

/// Lets `reader`, as [prometheus] user, through the test's folders.
fn read_as(setup: &Setup, reader: &str) {
    let settings = setup
        .read("etc/promfed.toml")
        .replace("user = \"root\"", &format!("user = \"{reader}\""));
    setup.write("etc/promfed.toml", &settings);
    for dir in [
        setup.root.path().to_path_buf(),
        setup.path("etc"),
        setup.path("etc/promfed.d"),
    ] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn doctor_passes_a_healthy_cluster_and_names_each_planted_fault() {
    let World {
        setup,
        fake,
        prometheus,
        _exporter,
    } = world("prod", &["node-a", "node-b"]);
    setup.add_cluster(&fake);

    // Healthy: every check passes, exit 0.
    let (code, report) = doctor(&setup, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(marked(&report, "✘").is_empty(), "{report}");
    for expected in [
        "✔ dns: 127.0.0.1 is an address",
        "✔ tcp: 127.0.0.1:",
        "✔ tls: the certificate (",
        "signed by ca_file and valid for the name",
        "✔ identity: authenticated as system:serviceaccount:monitoring:prometheus",
        "✔ permission: may get nodes/proxy",
        "✔ permission: may list endpointslices.discovery.k8s.io in namespace monitoring",
        "✔ permission: may get /metrics",
        "✔ discovery: 2 nodes, 2 node-exporter pods",
        "✔ scrape: kubelet node-a:",
        "✔ scrape: node-exporter node-a:",
        "through /api/v1/namespaces/monitoring/pods/node-exporter-node-a:9100/proxy/metrics",
        "✔ scrape: apiserver the API server:",
        "✔ reload: reload = \"http\": Prometheus runs with --web.enable-lifecycle",
        "✔ inotify: Prometheus needs about 1 inotify instance",
        "✔ files: ca_file",
    ] {
        assert!(report.contains(expected), "`{expected}` missing:\n{report}");
    }
    assert!(
        report.trim_end().ends_with(", 0 failed"),
        "a count ends the report:\n{report}"
    );
    // Read-only: nothing was installed and Prometheus was not reloaded.
    assert!(
        setup
            .read("prometheus/prometheus.yml")
            .contains("the test's first file")
    );

    // The JSON form says the same.
    let (code, json_report) = doctor(&setup, &["--json", "prod"]);
    assert_eq!(code, 0);
    let parsed: Value = serde_json::from_str(&json_report).unwrap();
    assert_eq!(parsed["failed"], 0);
    assert!(parsed["passed"].as_u64().unwrap() >= 15, "{parsed}");
    assert!(
        parsed["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["scope"] == "prod" && c["check"] == "permission" && c["verdict"] == "pass")
    );

    let healthy = fake.current_state();
    let token = setup.path("etc/promfed.d/prod/token");

    // A missing permission: named exactly, and the fix is `promfed rbac`.
    let mut state = healthy.clone();
    state["tokens"][&fake.token]["deny"] = json!(["get nodes/proxy"]);
    fake.set_state(state);
    let (code, report) = doctor(&setup, &[]);
    assert_eq!(code, 1, "{report}");
    assert_fault(&report, "may NOT get nodes/proxy", "promfed rbac");
    assert_fault(&report, "scrape: kubelet node-a:", "promfed rbac");
    assert!(report.contains("✔ permission: may list nodes"), "{report}");

    // A proxy path that answers 503: the kubelet cannot be reached.
    let mut state = healthy.clone();
    state["unreachable_nodes"] = json!(["node-a"]);
    fake.set_state(state);
    let (code, report) = doctor(&setup, &[]);
    assert_eq!(code, 1, "{report}");
    assert_fault(
        &report,
        "kubelet node-a: /api/v1/nodes/node-a/proxy/metrics answered 503",
        "cannot reach the kubelet on node node-a",
    );
    fake.set_state(healthy.clone());

    // An expired token: its own expiry, and the server's 401.
    let expired = jwt(now() - 3 * 86_400);
    let mut state = healthy.clone();
    state["tokens"][&expired] = json!({"user": "system:serviceaccount:monitoring:prometheus"});
    fake.set_state(state);
    std::fs::write(&token, format!("{expired}\n")).unwrap();
    let (code, report) = doctor(&setup, &[]);
    assert_eq!(code, 1, "{report}");
    assert_fault(&report, "token: the token in", "write a new token to");
    assert_fault(&report, "does not accept the token", "make new ones");
    assert!(
        !report.contains(&expired),
        "the token itself is never shown"
    );
    // One that expires in three days is a warning, not a failure.
    let soon = jwt(now() + 3 * 86_400);
    let mut state = healthy.clone();
    state["tokens"][&soon] = json!({"user": "system:serviceaccount:monitoring:prometheus"});
    fake.set_state(state);
    std::fs::write(&token, format!("{soon}\n")).unwrap();
    let (code, report) = doctor(&setup, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("! token: the token in"), "{report}");
    assert!(report.contains("expires in 2 days") || report.contains("expires in 3 days"));
    std::fs::write(&token, format!("{}\n", fake.token)).unwrap();
    fake.set_state(healthy.clone());

    // A CA that does not match: named, with what the server offers.
    let ca = setup.path("etc/promfed.d/prod/ca.crt");
    let good_ca = std::fs::read(&ca).unwrap();
    std::fs::copy(fake.pki("other-ca.crt"), &ca).unwrap();
    let (code, report) = doctor(&setup, &[]);
    assert_eq!(code, 1, "{report}");
    assert_fault(
        &report,
        "is not signed by the CA in ca_file",
        "put the cluster's own CA in",
    );
    assert!(report.contains("the server offers"), "{report}");
    assert!(
        !report.contains("✔ identity"),
        "nothing is sent past a failed handshake:\n{report}"
    );
    // A CA file without a certificate (a key pasted in its place), which
    // promtool would pass and Prometheus refuse.
    std::fs::write(&ca, TEST_OTHER_KEY).unwrap();
    let (code, report) = doctor(&setup, &[]);
    assert_eq!(code, 1, "{report}");
    assert_fault(
        &report,
        "holds no PEM certificate (it holds: PRIVATE KEY)",
        "put the PEM file the cluster's kubeconfig or Secret holds there",
    );
    std::fs::write(&ca, &good_ca).unwrap();

    // A CA the Prometheus user cannot read.
    let reader = test_user("promfed-doc");
    let settings = setup.read("etc/promfed.toml");
    read_as(&setup, &reader);
    let prod = setup.path("etc/promfed.d/prod");
    std::fs::set_permissions(&prod, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, report) = doctor(&setup, &[]);
    assert_eq!(code, 1, "{report}");
    assert_fault(
        &report,
        &format!("is not readable by user `{reader}`"),
        &format!("chgrp {reader}"),
    );
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o644)).unwrap();
    setup.write("etc/promfed.toml", &settings);

    // Prometheus without --web.enable-lifecycle while reload = "http".
    drop(prometheus);
    let plain = Prometheus::start_without_lifecycle(
        setup.root.path(),
        &setup.path("prometheus/prometheus.yml"),
    );
    setup.settings(&plain.url(), "reload = \"http\"");
    let (code, report) = doctor(&setup, &[]);
    assert_eq!(code, 1, "{report}");
    assert_fault(
        &report,
        "runs without --web.enable-lifecycle",
        "add --web.enable-lifecycle to ARGS in /etc/default/prometheus",
    );
    assert_eq!(
        marked(&report, "✘").len(),
        1,
        "the cluster itself is healthy again:\n{report}"
    );
}

#[test]
fn doctor_falls_back_on_servers_without_self_subject_review_and_names_unknown_clusters() {
    let World {
        setup,
        fake,
        prometheus: _prometheus,
        _exporter,
    } = world("old", &["node-a"]);
    setup.add_cluster(&fake);
    std::fs::write(
        setup.path("etc/promfed.d/old/token"),
        format!("{}\n", jwt(now() + 400 * 86_400)),
    )
    .unwrap();
    let mut state = fake.current_state();
    state["tokens"] = json!({ jwt(now() + 400 * 86_400): {"user": "system:serviceaccount:monitoring:prometheus"} });
    // A 1.25 server: no SelfSubjectReview at all.
    state["reviews"] = json!(["authorization.k8s.io/v1"]);
    fake.set_state(state);
    let (code, report) = doctor(&setup, &["old"]);
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains("! identity: this API server has no SelfSubjectReview")
            && report.contains("the token says it is system:serviceaccount:monitoring:prometheus"),
        "{report}"
    );
    let (code, report) = doctor(&setup, &["nosuch"]);
    assert_eq!(code, 1);
    assert_fault(&report, "no cluster file in", "cluster files end in .toml");
}

/// The permissions `doctor` asked the API server about, as the fake saw
/// them: `get nodes/proxy`, `list endpointslices in monitoring`, …
fn asked(fake: &FakeCluster) -> BTreeSet<String> {
    fake.request_counts()
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|k| k.strip_prefix("review ").map(str::to_string))
        .collect()
}

/// The same set, from the rules of the manifests `rbac` printed.
fn granted(manifests: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for doc in serde_norway::Deserializer::from_str(manifests) {
        let doc = <Value as serde::Deserialize>::deserialize(doc).expect("valid YAML");
        if doc.is_null() {
            continue;
        }
        let kind = doc["kind"].as_str().unwrap();
        assert!(
            [
                "ServiceAccount",
                "Secret",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding"
            ]
            .contains(&kind),
            "{kind}"
        );
        if kind == "Secret" {
            assert_eq!(doc["type"], "kubernetes.io/service-account-token");
            assert_eq!(
                doc["metadata"]["annotations"]["kubernetes.io/service-account.name"],
                "promfed"
            );
        }
        if kind.ends_with("Binding") {
            assert_eq!(doc["subjects"][0]["name"], "promfed");
            assert_eq!(doc["roleRef"]["kind"], kind.trim_end_matches("Binding"));
        }
        if kind != "ClusterRole" && kind != "Role" {
            continue;
        }
        let scope = doc["metadata"]["namespace"]
            .as_str()
            .map_or(String::new(), |ns| format!(" in {ns}"));
        for rule in doc["rules"].as_array().unwrap() {
            let objects: Vec<&str> = rule["resources"]
                .as_array()
                .or(rule["nonResourceURLs"].as_array())
                .unwrap()
                .iter()
                .map(|o| o.as_str().unwrap())
                .collect();
            for verb in rule["verbs"].as_array().unwrap() {
                for object in &objects {
                    out.insert(format!("{} {object}{scope}", verb.as_str().unwrap()));
                }
            }
        }
    }
    out
}

#[test]
fn rbac_prints_exactly_the_permissions_doctor_asks_for() {
    let World {
        setup,
        fake,
        prometheus: _prometheus,
        _exporter,
    } = world("mesh", &["node-a"]);
    setup.add_cluster(&fake);
    setup.append(
        "etc/promfed.d/mesh.toml",
        "\n[pods]\nenabled = true\nnamespaces = [\"bookinfo\", \"istio-system\"]\n\n[federate]\nmatch = ['{job=\"kubernetes-pods\"}']\n",
    );

    let out = setup.promfed(&["rbac", "mesh"]);
    assert_exit(&out, 0);
    let manifests = stdout(&out);
    assert!(
        manifests.contains("WARNING: `get nodes/proxy`") && manifests.contains("exec and attach")
    );
    assert!(manifests.contains("base64 -d > token"));
    let rules = granted(&manifests);
    assert!(
        rules.contains("get services/proxy in istio-system"),
        "{rules:?}"
    );
    assert!(rules.contains("get /metrics"), "{rules:?}");

    let (_, report) = doctor(&setup, &["mesh"]);
    assert_eq!(asked(&fake), rules, "doctor asked for:\n{report}");

    // Jobs turned off take their rules away.
    setup.write(
        "etc/promfed.d/mesh.toml",
        &setup
            .read("etc/promfed.d/mesh.toml")
            .replace("[pods]\nenabled = true\nnamespaces = [\"bookinfo\", \"istio-system\"]\n\n[federate]\nmatch = ['{job=\"kubernetes-pods\"}']\n", "[kubelet]\nenabled = false\n\n[cadvisor]\nenabled = false\n"),
    );
    let manifests = stdout(&setup.promfed(&["rbac", "--namespace", "observability", "mesh"]));
    let rules = granted(&manifests);
    assert!(!manifests.contains("WARNING"), "{manifests}");
    assert!(!rules.iter().any(|r| r.contains("nodes")), "{rules:?}");
    assert!(manifests.contains("namespace: observability"));

    // The defaults, without a cluster file; and on a workstation without
    // promfed's settings at all (where kubectl is), the same, with a warning.
    let defaults = granted(&stdout(&setup.promfed(&["rbac"])));
    let elsewhere = std::process::Command::new(env!("CARGO_BIN_EXE_promfed"))
        .args(["--config", "/nonexistent/promfed.toml", "rbac"])
        .output()
        .unwrap();
    assert_exit(&elsewhere, 0);
    assert_eq!(granted(&stdout(&elsewhere)), defaults);
    assert!(stderr(&elsewhere).contains("rbac uses the defaults"));
    assert!(
        defaults.contains("get nodes/proxy")
            && defaults.contains("watch endpointslices in monitoring")
    );
}

/// A kubeconfig as `kind` or kubeadm writes it, with inline data, and one
/// that names files (relative to its folder).
fn kubeconfigs(setup: &Setup, fake: &FakeCluster) -> (std::path::PathBuf, std::path::PathBuf) {
    let b64 = |p: std::path::PathBuf| STANDARD.encode(std::fs::read(p).unwrap());
    let inline = setup.path("kube/inline.yaml");
    setup.write(
        "kube/inline.yaml",
        &format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: prod-admin\nclusters:\n- name: prod\n  cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: prod-admin\n  context: {{cluster: prod, user: prom}}\n- name: eks\n  context: {{cluster: prod, user: aws}}\nusers:\n- name: prom\n  user:\n    token: {}\n- name: aws\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: aws\n      args: [eks, get-token, --cluster-name, prod]\n",
            fake.url(),
            b64(fake.ca()),
            fake.token
        ),
    );
    std::fs::copy(fake.pki("client.crt"), setup.path("kube/client.crt")).unwrap();
    std::fs::copy(fake.pki("client.key"), setup.path("kube/client.key")).unwrap();
    std::fs::copy(fake.ca(), setup.path("kube/ca.crt")).unwrap();
    let files = setup.path("kube/files.yaml");
    setup.write(
        "kube/files.yaml",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: ca.crt\ncontexts:\n- name: cert\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    client-certificate: client.crt\n    client-key: client.key\n",
            fake.url()
        ),
    );
    (inline, files)
}

/// A kubeconfig whose CA or client key Prometheus would refuse (a key
/// pasted as the CA, a key of another certificate) is refused before
/// anything is written, naming the kubeconfig's cluster or user.
#[test]
fn add_cluster_refuses_tls_data_prometheus_would_refuse_and_writes_nothing() {
    let setup = Setup::new();
    setup.settings("http://127.0.0.1:1", "reload = \"http\"");
    let b64 = |text: &str| STANDARD.encode(text);
    let kubeconfig = |ca: &str, user: &str| {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: prod\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: {}\ncontexts:\n- name: c\n  context: {{cluster: prod, user: admin}}\nusers:\n- name: admin\n  user:\n{user}",
            b64(ca)
        )
    };
    let cases = [
        (
            kubeconfig(TEST_OTHER_KEY, "    token: abc\n"),
            "cluster `prod` in",
            "its certificate-authority(-data) holds no PEM certificate (it holds: PRIVATE KEY)",
        ),
        (
            kubeconfig(
                TEST_CA,
                &format!(
                    "    client-certificate-data: {}\n    client-key-data: {}\n",
                    b64(TEST_CLIENT_CERT),
                    b64(TEST_OTHER_KEY)
                ),
            ),
            "user `admin` in",
            "its client-key(-data) is not the key of the certificate in client-certificate(-data)",
        ),
    ];
    for (text, whose, why) in cases {
        setup.write("kube/config.yaml", &text);
        let out = setup.promfed(&[
            "add-cluster",
            "prod",
            "--kubeconfig",
            setup.path("kube/config.yaml").to_str().unwrap(),
        ]);
        assert_exit(&out, 1);
        let err = stderr(&out);
        assert!(err.contains(whose) && err.contains(why), "{err}");
        assert!(err.contains("nothing was added"), "{err}");
        assert!(
            !setup.path("etc/promfed.d/prod.toml").exists()
                && !setup.path("etc/promfed.d/prod").exists()
        );
    }
}

#[test]
fn add_cluster_writes_a_cluster_from_a_kubeconfig_and_checks_it() {
    let World {
        setup,
        fake,
        prometheus: _prometheus,
        _exporter,
    } = world("prod", &["node-a"]);
    let reader = test_user("promfed-doc");
    read_as(&setup, &reader);
    let (inline, files) = kubeconfigs(&setup, &fake);
    let kube = inline.to_str().unwrap();

    // An exec plugin is copied as [exec]; doctor finds no credential yet
    // (the daemon runs the plugin and writes it under the state folder).
    // Then it goes, so that the rest sees one cluster.
    let out = setup.promfed(&[
        "add-cluster",
        "eks",
        "--kubeconfig",
        kube,
        "--context",
        "eks",
    ]);
    assert!(
        stdout(&out).contains("state/credentials/eks/token cannot be read"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let toml = setup.read("etc/promfed.d/eks.toml");
    assert!(
        toml.contains("[exec]") && toml.contains("command = \"aws\""),
        "{toml}"
    );
    std::fs::remove_file(setup.path("etc/promfed.d/eks.toml")).unwrap();
    std::fs::remove_dir_all(setup.path("etc/promfed.d/eks")).unwrap();

    // Inline token and CA, from the current context.
    let out = setup.promfed(&["add-cluster", "prod", "--kubeconfig", kube]);
    assert_exit(&out, 0);
    let said = stdout(&out);
    assert!(
        said.contains("✔ identity: authenticated as system:serviceaccount:monitoring:prometheus"),
        "{said}"
    );
    assert!(said.contains("✔ scrape: kubelet node-a"), "{said}");
    let toml = setup.read("etc/promfed.d/prod.toml");
    assert!(
        toml.contains(&format!("api_server = \"{}\"", fake.url())),
        "{toml}"
    );
    assert!(
        toml.contains("token_file = \"prod/token\"") && toml.contains("ca_file = \"prod/ca.crt\"")
    );
    assert_eq!(setup.read("etc/promfed.d/prod/token").trim(), fake.token);
    let gid = |p: &str| std::fs::metadata(setup.path(p)).unwrap().gid();
    let mode = |p: &str| std::fs::metadata(setup.path(p)).unwrap().mode() & 0o777;
    let reader_gid = nix_gid(&reader);
    for (path, expected) in [
        ("etc/promfed.d/prod", 0o750),
        ("etc/promfed.d/prod/token", 0o640),
        ("etc/promfed.d/prod/ca.crt", 0o640),
    ] {
        assert_eq!(mode(path), expected, "{path}");
        assert_eq!(
            gid(path),
            reader_gid,
            "{path} belongs to Prometheus's group"
        );
    }
    let leftovers: Vec<String> = std::fs::read_dir(setup.path("etc/promfed.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The cluster file is valid for the whole pipeline.
    assert_exit(&setup.promfed(&["check"]), 0);

    // Not again without --force; with it, from files and a client certificate.
    let again = setup.promfed(&[
        "add-cluster",
        "prod",
        "--kubeconfig",
        files.to_str().unwrap(),
    ]);
    assert_exit(&again, 1);
    assert!(stderr(&again).contains("already exists") && stderr(&again).contains("--force"));
    assert!(
        setup.read("etc/promfed.d/prod.toml").contains("token_file"),
        "untouched"
    );
    let forced = setup.promfed(&[
        "add-cluster",
        "prod",
        "--kubeconfig",
        files.to_str().unwrap(),
        "--force",
    ]);
    assert_exit(&forced, 0);
    let toml = setup.read("etc/promfed.d/prod.toml");
    // The new credentials in a folder the old cluster file never named.
    assert!(
        toml.contains("cert_file = \"prod@2/client.crt\"")
            && toml.contains("key_file = \"prod@2/client.key\""),
        "{toml}"
    );
    assert!(!toml.contains("token_file"));
    assert!(!setup.path("etc/promfed.d/prod").exists());
    assert!(
        stdout(&forced).contains("✔ identity: authenticated as promfed-client"),
        "{}",
        stdout(&forced)
    );

    // A missing context and a bad name are told plainly.
    let out = setup.promfed(&[
        "add-cluster",
        "x",
        "--kubeconfig",
        kube,
        "--context",
        "nope",
    ]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("no context `nope`") && stderr(&out).contains("prod-admin, eks"));
    let out = setup.promfed(&["add-cluster", "../escape", "--kubeconfig", kube]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("is not a valid cluster name"),
        "{}",
        stderr(&out)
    );
    assert!(!setup.path("etc/escape.toml").exists() && !setup.path("etc/escape").exists());
}

fn nix_gid(user: &str) -> u32 {
    let out = std::process::Command::new("id")
        .args(["-g", user])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
