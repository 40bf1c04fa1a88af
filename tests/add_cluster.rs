//! `promfed add-cluster` is one transaction: every refusal, at any step,
//! leaves the clusters folder byte for byte (and mode for mode) as it was;
//! `--force` refused leaves the old cluster whole, and accepted never lets
//! a cluster file name credentials it was not checked with; nothing of a
//! kubeconfig reaches the cluster file as raw text; nothing is written
//! through a symlink; and no secret of the kubeconfig reaches any output.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::support::*;

const TOKEN: &str = "tOkEn-0f-the-cluster-9f3a71";
const OTHER_TOKEN: &str = "another-t0ken-that-is-refused-52c1";
const PROXY_PASSWORD: &str = "Pr0xyPa55w0rd";
const SERVER_PASSWORD: &str = "S3rverPa55w0rd";
const SHADOW_HASH: &str = "$6$saltsalt$S3CR3THASHofRoot";
/// Every secret a test's kubeconfigs hold; none may be printed.
const SECRETS: [&str; 5] = [
    TOKEN,
    OTHER_TOKEN,
    PROXY_PASSWORD,
    SERVER_PASSWORD,
    SHADOW_HASH,
];

/// Each entry of a tree, without following links: its kind and content,
/// its mode and its owner.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

type Tree = BTreeMap<PathBuf, (Node, u32, u32, u32)>;

fn tree(root: &Path) -> Tree {
    let mut all = Tree::new();
    walk(root, root, &mut all);
    all
}

fn walk(root: &Path, dir: &Path, all: &mut Tree) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let node = if meta.file_type().is_symlink() {
            Node::Link(std::fs::read_link(&path).unwrap())
        } else if meta.is_dir() {
            walk(root, &path, all);
            Node::Dir
        } else {
            Node::File(std::fs::read(&path).unwrap())
        };
        let relative = path.strip_prefix(root).unwrap().to_path_buf();
        all.insert(
            relative,
            (node, meta.mode() & 0o7777, meta.uid(), meta.gid()),
        );
    }
}

fn clusters(setup: &Setup) -> Tree {
    tree(&setup.path("etc/promfed.d"))
}

/// YAML's double-quoted form of `text` (JSON's is one).
fn q(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

fn b64(text: &str) -> String {
    STANDARD.encode(text)
}

/// A kubeconfig of one context, each part replaceable.
#[derive(Clone)]
struct Kube {
    context: String,
    cluster: String,
    user: String,
    server: String,
    /// Lines of the cluster entry after `server` (4 spaces in).
    cluster_lines: String,
    /// Lines of the user entry (4 spaces in).
    user_lines: String,
}

impl Kube {
    fn new() -> Kube {
        Kube {
            context: "c".into(),
            cluster: "k".into(),
            user: "u".into(),
            server: "https://127.0.0.1:1".into(),
            cluster_lines: format!("    certificate-authority-data: {}\n", b64(TEST_CA)),
            user_lines: format!("    token: {TOKEN}\n"),
        }
    }

    fn text(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: {ctx}\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n{cluster_lines}contexts:\n- name: {ctx}\n  context:\n    cluster: {cluster}\n    user: {user}\nusers:\n- name: {user}\n  user:\n{user_lines}",
            ctx = q(&self.context),
            cluster = q(&self.cluster),
            user = q(&self.user),
            server = q(&self.server),
            cluster_lines = self.cluster_lines,
            user_lines = self.user_lines,
        )
    }
}

/// A setup with an operator's own cluster (`keep`) beside the ones the
/// tests add, so that the folder is never empty.
fn setup() -> Setup {
    let setup = Setup::new();
    setup.settings("http://127.0.0.1:1", "reload = \"http\"");
    setup.write("etc/promfed.d/keep.toml", "api_server = \"https://127.0.0.1:1\"\ntoken_file = \"keep/token\"\ninsecure_skip_verify = true\n");
    setup.write("etc/promfed.d/keep/token", "keep-token\n");
    std::fs::set_permissions(
        setup.path("etc/promfed.d/keep/token"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // A kubeconfig's files, and a file that is not a token.
    setup.write(
        "kube/shadow",
        &format!("root:{SHADOW_HASH}:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"),
    );
    setup.write("kube/token", &format!("{OTHER_TOKEN}\n"));
    setup
}

/// Runs add-cluster on `kube` (as kube/config.yaml) with `args` after the
/// name, and asserts that no secret is in what it printed.
fn add(setup: &Setup, name: &str, kube: &str, args: &[&str]) -> Output {
    setup.write("kube/config.yaml", kube);
    let path = setup.path("kube/config.yaml");
    let mut all = vec!["add-cluster", name, "--kubeconfig", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = setup.promfed(&all);
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    for secret in SECRETS {
        assert!(
            !printed.contains(secret),
            "`{secret}` was printed:\n{printed}"
        );
    }
    out
}

/// Asserts a refusal that says `why` and left the clusters folder as
/// `before`.
fn assert_refused(setup: &Setup, out: &Output, why: &str, before: &Tree) {
    assert_exit(out, 1);
    let err = stderr(out);
    assert!(
        err.contains(why) && err.contains("nothing was added"),
        "expected `{why}`:\n{err}"
    );
    assert!(
        !stdout(out).contains("wrote"),
        "a refusal wrote:\n{}",
        stdout(out)
    );
    assert_eq!(
        &clusters(setup),
        before,
        "the clusters folder changed ({why})"
    );
}

/// Asserts that add-cluster wrote the cluster (doctor, which runs after,
/// may fail: the API server at 127.0.0.1:1 does not answer).
fn assert_added(out: &Output, name: &str) {
    assert!(
        stdout(out).contains(&format!("cluster {name} is in")),
        "not added:\n{}\n{}",
        stdout(out),
        stderr(out)
    );
}

/// A cluster file's top-level keys and string values.
fn keys(setup: &Setup, name: &str) -> BTreeMap<String, String> {
    let text = setup.read(&format!("etc/promfed.d/{name}.toml"));
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    doc.iter()
        .map(|(k, v)| {
            let value = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            (k.to_string(), value)
        })
        .collect()
}

/// Kubeconfigs that are refused, each at its own step (reading, the
/// context, the credentials, the staged cluster file), and what the
/// refusal says.
fn refused_kubeconfigs() -> Vec<(Kube, &'static str)> {
    let base = Kube::new();
    let with = |f: &dyn Fn(&mut Kube)| {
        let mut k = base.clone();
        f(&mut k);
        k
    };
    vec![
        // A shadow-like file as the token: several lines with colons.
        (
            with(&|k| k.user_lines = "    tokenFile: shadow\n".into()),
            "holds a line break, space or control character inside the token",
        ),
        (
            with(&|k| k.user_lines = "    tokenFile: missing\n".into()),
            "cannot read tokenFile",
        ),
        (
            with(&|k| k.user_lines = "    token: \"two words\"\n".into()),
            "its token holds a line break, space",
        ),
        (
            with(&|k| k.user_lines = "    token: \"\"\n".into()),
            "its token is empty",
        ),
        // Plain http: refused only once the cluster file is staged.
        (
            with(&|k| k.server = "http://127.0.0.1:6443".into()),
            "must be reached over https://",
        ),
        (
            with(&|k| {
                k.cluster_lines.push_str(&format!(
                    "    proxy-url: http://squid:{PROXY_PASSWORD}@proxy:3128\n"
                ))
            }),
            "is reached through proxy-url http://[redacted]@proxy:3128",
        ),
        (
            with(&|k| k.server = format!("https://admin:{SERVER_PASSWORD}@127.0.0.1:6443")),
            "its server https://[redacted]@127.0.0.1:6443 carries a user name or password",
        ),
        (
            with(&|k| k.server = format!("https://:{SERVER_PASSWORD}@127.0.0.1:6443")),
            "carries a user name or password",
        ),
        (
            with(&|k| k.user_lines = "    auth-provider:\n      name: gcp\n".into()),
            "auth-provider, which client-go removed",
        ),
        // An exec stanza is copied, but not with a token besides, and not
        // one the cluster file refuses (checked once staged).
        (
            with(&|k| {
                k.user_lines = format!(
                    "    token: {TOKEN}\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n"
                )
            }),
            "has an exec credential plugin and a token or client certificate besides",
        ),
        (
            with(&|k| {
                k.user_lines = "    exec:\n      apiVersion: client.authentication.k8s.io/v1alpha1\n      command: aws\n".into()
            }),
            "is not an exec credential version promfed speaks",
        ),
        (
            with(&|k| {
                k.user_lines = "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n      interactiveMode: Always\n".into()
            }),
            "promfed runs plugins without a terminal",
        ),
        (
            with(&|k| {
                k.cluster_lines =
                    format!("    certificate-authority-data: {}\n", b64(TEST_OTHER_KEY))
            }),
            "holds no PEM certificate",
        ),
        (
            with(&|k| {
                k.user_lines = format!(
                    "    client-certificate-data: {}\n    client-key-data: {}\n",
                    b64(TEST_CLIENT_CERT),
                    b64(TEST_OTHER_KEY)
                )
            }),
            "is not the key of the certificate",
        ),
    ]
}

/// Every refusal, for a new cluster and for `--force` over an existing
/// one, leaves every file and mode of the clusters folder as it was; the
/// old cluster's token, CA and file stay the ones it was checked with.
#[test]
fn every_refusal_leaves_the_clusters_folder_byte_identical() {
    let setup = setup();
    // The cluster --force would replace, as add-cluster wrote it.
    let out = add(&setup, "prod", &Kube::new().text(), &[]);
    assert_added(&out, "prod");
    assert_eq!(setup.read("etc/promfed.d/prod/token").trim(), TOKEN);
    let before = clusters(&setup);
    for (kube, why) in refused_kubeconfigs() {
        let out = add(&setup, "new", &kube.text(), &[]);
        assert_refused(&setup, &out, why, &before);
        let out = add(&setup, "prod", &kube.text(), &["--force"]);
        assert_refused(&setup, &out, why, &before);
    }
    // Files that are not kubeconfigs, whose text no error may quote: a
    // shadow file, and one where YAML finds a string (a hash) in place of
    // a list, which serde's error would quote.
    let shadow = setup.read("kube/shadow");
    let quoted = format!("users: {}\n", q(&shadow));
    for name in ["new", "prod"] {
        let out = add(&setup, name, &shadow, &["--force"]);
        assert_refused(&setup, &out, "", &before);
        let out = add(&setup, name, &quoted, &["--force"]);
        assert_refused(&setup, &out, "is not a kubeconfig", &before);
    }
    // Without --force, an existing cluster is not replaced.
    let out = add(&setup, "prod", &Kube::new().text(), &[]);
    assert_refused(&setup, &out, "already exists", &before);
}

/// `--force` that is accepted puts the new credentials in a folder no
/// cluster file names (`prod@2/`), renames the cluster file over the old
/// one, then removes the old folder's credentials: the old file never names
/// the new token, the new file never the old one.
#[test]
fn force_accepted_swaps_in_a_fresh_credentials_folder() {
    let setup = setup();
    assert_added(&add(&setup, "prod", &Kube::new().text(), &[]), "prod");
    let mut files = Kube::new();
    files.user_lines = "    tokenFile: token\n".into();
    let out = add(&setup, "prod", &files.text(), &["--force"]);
    assert_added(&out, "prod");
    let toml = keys(&setup, "prod");
    assert_eq!(toml["token_file"], "prod@2/token");
    assert_eq!(toml["ca_file"], "prod@2/ca.crt");
    assert_eq!(setup.read("etc/promfed.d/prod@2/token").trim(), OTHER_TOKEN);
    assert!(
        !setup.path("etc/promfed.d/prod").exists(),
        "the old folder stays"
    );
    assert!(
        stdout(&out).contains("removed the old credentials in"),
        "{}",
        stdout(&out)
    );
    let mode = |p: &str| std::fs::metadata(setup.path(p)).unwrap().mode() & 0o777;
    assert_eq!(mode("etc/promfed.d/prod@2"), 0o750);
    assert_eq!(mode("etc/promfed.d/prod@2/token"), 0o640);
    assert_eq!(mode("etc/promfed.d/prod.toml"), 0o644);

    // Again: back to prod/; an operator's own file in the old folder stays.
    setup.write("etc/promfed.d/prod@2/federate-token", "mine\n");
    let out = add(&setup, "prod", &Kube::new().text(), &["--force"]);
    assert_added(&out, "prod");
    assert_eq!(keys(&setup, "prod")["token_file"], "prod/token");
    assert_eq!(setup.read("etc/promfed.d/prod/token").trim(), TOKEN);
    assert!(
        stdout(&out).contains("which holds other files and stays"),
        "{}",
        stdout(&out)
    );
    let left: Vec<String> = std::fs::read_dir(setup.path("etc/promfed.d/prod@2"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["federate-token"]);
    // No staging folder is left behind.
    let hidden: Vec<String> = std::fs::read_dir(setup.path("etc/promfed.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

/// Names with a line break or NUL are refused, naming the kubeconfig key;
/// names with `#`, `"`, `\` and `]` are written as TOML values and the
/// comment stays one line: the file holds exactly the keys add-cluster
/// means.
#[test]
fn kubeconfig_names_never_reach_the_cluster_file_as_text() {
    let setup = setup();
    let before = clusters(&setup);
    let injected = "\ninsecure_skip_verify = true #";
    let cases: Vec<(Kube, &str, Vec<&str>)> = vec![
        (
            Kube {
                context: format!("c{injected}"),
                ..Kube::new()
            },
            "the context name",
            vec![],
        ),
        (
            Kube {
                context: "c\0d".into(),
                ..Kube::new()
            },
            "the context name `c\\u{0}d`",
            vec![],
        ),
        (
            Kube {
                cluster: format!("k{injected}"),
                ..Kube::new()
            },
            "the cluster name",
            vec![],
        ),
        (
            Kube {
                user: "u\0".into(),
                ..Kube::new()
            },
            "the user name",
            vec![],
        ),
        (
            Kube {
                server: format!("https://127.0.0.1:1{injected}"),
                ..Kube::new()
            },
            "the server of cluster `k`",
            vec![],
        ),
        (
            Kube {
                cluster_lines: format!(
                    "    certificate-authority-data: {}\n    tls-server-name: {}\n",
                    b64(TEST_CA),
                    q(&format!("kube{injected}"))
                ),
                ..Kube::new()
            },
            "the tls-server-name of cluster `k`",
            vec![],
        ),
        (
            Kube {
                user_lines: format!("    tokenFile: {}\n", q("to\nken")),
                ..Kube::new()
            },
            "the tokenFile of user `u`",
            vec![],
        ),
        // --context given on the command line, with a line break.
        (
            Kube {
                context: format!("c{injected}"),
                ..Kube::new()
            },
            "holds a control character",
            vec!["--context", "c\ninsecure_skip_verify = true #"],
        ),
    ];
    for (kube, why, args) in cases {
        let out = add(&setup, "new", &kube.text(), &args);
        assert_refused(&setup, &out, why, &before);
        assert!(
            stderr(&out).contains("holds a control character"),
            "{}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains(injected), "{}", stderr(&out));
    }

    // Printable but hostile: written, as values.
    let hostile = "evil\" ] # insecure_skip_verify = true \\ [x]";
    let kube = Kube {
        context: hostile.into(),
        cluster: format!("k{hostile}"),
        user: format!("u{hostile}"),
        cluster_lines: format!(
            "    certificate-authority-data: {}\n    tls-server-name: {}\n",
            b64(TEST_CA),
            q(&format!("sni{hostile}"))
        ),
        ..Kube::new()
    };
    let out = add(&setup, "new", &kube.text(), &[]);
    assert_added(&out, "new");
    let toml = keys(&setup, "new");
    assert_eq!(
        toml.keys().map(String::as_str).collect::<Vec<_>>(),
        ["api_server", "ca_file", "tls_server_name", "token_file"],
        "{toml:?}"
    );
    assert_eq!(toml["tls_server_name"], format!("sni{hostile}"));
    assert_eq!(toml["api_server"], "https://127.0.0.1:1");
    let text = setup.read("etc/promfed.d/new.toml");
    let comments: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(comments.len(), 1, "{text}");
    assert!(comments[0].contains(hostile), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
}

/// An existing `NAME/` that is a symlink out of the clusters folder is
/// refused: nothing is written into its target and its mode stays 755.
#[test]
fn a_symlinked_credentials_folder_is_refused_and_its_target_untouched() {
    let setup = setup();
    let outside = setup.path("outside");
    std::fs::create_dir(&outside).unwrap();
    setup.write("outside/notes", "the operator's\n");
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&outside, setup.path("etc/promfed.d/new")).unwrap();
    let outside_before = tree(&outside);
    let before = clusters(&setup);
    let out = add(&setup, "new", &Kube::new().text(), &[]);
    assert_refused(&setup, &out, "is a symlink", &before);
    assert!(
        stderr(&out).contains(&outside.display().to_string()),
        "{}",
        stderr(&out)
    );
    assert_eq!(tree(&outside), outside_before);
    assert_eq!(
        std::fs::metadata(&outside).unwrap().mode() & 0o7777,
        0o755,
        "the link's target changed mode"
    );

    // The same under an existing cluster, with --force.
    assert_added(&add(&setup, "prod", &Kube::new().text(), &[]), "prod");
    let kept = setup.path("etc/promfed.d/prod-real");
    std::fs::rename(setup.path("etc/promfed.d/prod"), &kept).unwrap();
    std::os::unix::fs::symlink(&outside, setup.path("etc/promfed.d/prod")).unwrap();
    let before = clusters(&setup);
    let out = add(&setup, "prod", &Kube::new().text(), &["--force"]);
    assert_refused(&setup, &out, "is a symlink", &before);
    assert_eq!(tree(&outside), outside_before);
    assert_eq!(std::fs::metadata(&outside).unwrap().mode() & 0o7777, 0o755);
}

const AWS_SECRET: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";

/// An EKS kubeconfig's user: `aws eks get-token`, with a profile and an
/// access key in its environment.
fn eks_user(args: &str) -> String {
    format!(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: aws\n      args: {args}\n      env:\n      - name: AWS_PROFILE\n        value: monitoring\n      - name: AWS_SECRET_ACCESS_KEY\n        value: {AWS_SECRET}\n      interactiveMode: IfAvailable\n      provideClusterInfo: false\n      installHint: \"install the AWS CLI\"\n"
    )
}

/// An EKS-shaped exec stanza becomes the cluster file's `[exec]`, with the
/// same values, which `promfed check` accepts; the cluster file, holding
/// the access key, is as private as a token; the key is never printed.
#[test]
fn an_eks_exec_stanza_becomes_the_cluster_files_exec_table() {
    let setup = setup();
    let kube = Kube {
        user_lines: eks_user(r#"["eks", "get-token", "--cluster-name", "prod"]"#),
        ..Kube::new()
    };
    let out = add(&setup, "prod", &kube.text(), &[]);
    assert_added(&out, "prod");
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!printed.contains(AWS_SECRET), "{printed}");

    let text = setup.read("etc/promfed.d/prod.toml");
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    let top: Vec<&str> = doc.iter().map(|(k, _)| k).collect();
    assert_eq!(top, ["api_server", "ca_file", "exec"], "{text}");
    let exec = doc["exec"].as_table().unwrap();
    let keys: Vec<&str> = exec.iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        ["api_version", "command", "args", "env", "interactive_mode"],
        "{text}"
    );
    assert_eq!(
        exec["api_version"].as_str(),
        Some("client.authentication.k8s.io/v1beta1")
    );
    assert_eq!(exec["command"].as_str(), Some("aws"));
    let args: Vec<&str> = exec["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args, ["eks", "get-token", "--cluster-name", "prod"]);
    let env = exec["env"].as_inline_table().unwrap();
    assert_eq!(env.len(), 2);
    assert_eq!(env["AWS_PROFILE"].as_str(), Some("monitoring"));
    assert_eq!(env["AWS_SECRET_ACCESS_KEY"].as_str(), Some(AWS_SECRET));
    assert_eq!(exec["interactive_mode"].as_str(), Some("IfAvailable"));
    assert_eq!(setup.read("etc/promfed.d/prod/ca.crt"), TEST_CA);
    let mode = |p: &str| std::fs::metadata(setup.path(p)).unwrap().mode() & 0o777;
    assert_eq!(mode("etc/promfed.d/prod.toml"), 0o640);
    assert!(!setup.path("etc/promfed.d/prod/token").exists());

    // Doctor's run says who writes the token file that is not there yet.
    assert!(
        stdout(&out).contains(
            "fix: start the daemon or run `promfed apply`: it runs the [exec] plugin and writes this file"
        ),
        "{}",
        stdout(&out)
    );

    // `promfed check` accepts the new [exec] cluster before any token is
    // obtained, and writes nothing: not the placeholder `apply` writes.
    // (Only the cache of promtool's version, which any run may keep.)
    let before = tree(setup.root.path());
    let out = setup.promfed(&["check"]);
    assert_exit(&out, 0);
    assert!(!stdout(&out).contains(AWS_SECRET) && !stderr(&out).contains(AWS_SECRET));
    let mut after = tree(setup.root.path());
    after.remove(Path::new("state/promtool-version"));
    assert_eq!(after, before);
    assert!(!setup.path("state/credentials/prod/token").exists());

    // Its jobs read the token promfed will obtain into the state folder.
    let out = setup.promfed(&["render"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("credentials/prod/token"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains(AWS_SECRET) && !stderr(&out).contains(AWS_SECRET));
}

/// A line break in an argument, NUL in a variable's value, an env name
/// twice: refused, naming the key and not the value; nothing is left.
#[test]
fn an_exec_stanza_with_a_control_character_is_refused_and_nothing_left() {
    let setup = setup();
    let before = clusters(&setup);
    let cases = [
        (
            eks_user(
                r#"["eks", "get-token", "--cluster-name", "prod\ninsecure_skip_verify = true"]"#,
            ),
            "the exec argument 4 of user `u` holds a control character",
        ),
        (
            eks_user(r#"["eks"]"#).replace("value: monitoring", "value: \"mon\\0itoring\""),
            "the value of exec env `AWS_PROFILE` of user `u` holds a control character",
        ),
        (
            eks_user(r#"["eks"]"#).replace("AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"),
            "its exec env gives `AWS_PROFILE` twice",
        ),
    ];
    for (user_lines, why) in cases {
        let kube = Kube {
            user_lines,
            ..Kube::new()
        };
        for name in ["new", "keep"] {
            let out = add(&setup, name, &kube.text(), &["--force"]);
            assert_refused(&setup, &out, why, &before);
            let err = stderr(&out);
            assert!(
                !err.contains("insecure_skip_verify") && !err.contains(AWS_SECRET),
                "{err}"
            );
        }
    }
}
