//! `promfed rbac`: the least a cluster must grant promfed's identity for
//! the jobs a cluster file enables, as manifests to `kubectl apply`. The
//! rules come from `permissions::needed`, the list `promfed doctor` asks.

use std::collections::BTreeMap;
use std::fmt::Write;

use std::path::Path;

use crate::config::cluster::Cluster;
use crate::config::credential_source::Source;
use crate::config::defaults::Defaults;
use crate::config::diagnostic::SourceText;
use crate::config::names;
use crate::config::settings::DiscoveryMode;
use crate::permissions::{self, Need, Object};

/// The source of the cluster made of the defaults.
const DEFAULTS: &str = "(the defaults)";

/// The service account's name, and the roles'.
const NAME: &str = "promfed";

/// How promfed's credential for the service account is made: a long-lived
/// token Secret (a `token_file` the operator installs), or TokenRequest,
/// where promfed signs in as `base` (the identity of the cluster file's
/// `token_file` or client certificate) and asks for the account's tokens.
pub enum TokenKind<'a> {
    Secret,
    Request { base: &'a str },
}

/// Which variant to print: TokenRequest when the cluster file has a
/// `[token_request]` section or `--token-request` asks for it. The
/// account is the section's (namespace and name) or `NAMESPACE/promfed`.
fn account<'a>(
    cluster: &'a Cluster,
    namespace: &'a str,
    asked: bool,
    base: &'a str,
) -> (&'a str, &'a str, TokenKind<'a>) {
    match &cluster.auth.source {
        Some(Source::TokenRequest(t)) => (
            t.namespace.as_str(),
            t.service_account.as_str(),
            TokenKind::Request { base },
        ),
        _ if asked => (namespace, NAME, TokenKind::Request { base }),
        _ => (namespace, NAME, TokenKind::Secret),
    }
}

/// The base identity's subject: a service account's user name
/// (`system:serviceaccount:NS:NAME`) as a ServiceAccount, any other (a
/// client certificate's CN) as a User. Quoted as JSON strings, which YAML
/// reads as they are.
fn subject(base: &str) -> String {
    let q = |t: &str| serde_json::to_string(t).unwrap_or_else(|_| "\"\"".into());
    let service_account = base
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, name)| names::is_label(ns) && names::is_subdomain(name));
    match service_account {
        Some((ns, name)) => format!(
            "- kind: ServiceAccount\n  name: {}\n  namespace: {}\n",
            q(name),
            q(ns)
        ),
        None => format!(
            "- kind: User\n  apiGroup: rbac.authorization.k8s.io\n  name: {}\n",
            q(base)
        ),
    }
}

/// Whether `base` can be named in a binding: not empty, one line.
pub fn base_problem(base: &str) -> Option<&'static str> {
    if base.is_empty() {
        Some("is empty")
    } else if base.chars().any(char::is_control) {
        Some("holds a control character")
    } else {
        None
    }
}

/// The manifests, a YAML stream with comments: the TokenRequest variant
/// with `token_request` (`--token-request`) or a `[token_request]` in the
/// cluster file, `base` (`--base-user`) its signing-in identity.
pub fn manifests(
    cluster: &Cluster,
    mode: DiscoveryMode,
    namespace: &str,
    token_request: bool,
    base: &str,
) -> String {
    let (namespace, account_name, kind) = account(cluster, namespace, token_request, base);
    let needs = permissions::needed(cluster, mode);
    let mut out = String::new();
    let jobs: Vec<&str> = crate::targets::JobKind::ALL
        .iter()
        .filter(|k| k.enabled_in(cluster))
        .map(|k| k.slug())
        .chain(cluster.exporters.iter().map(|e| e.job.as_str()))
        .collect();
    let about = if cluster.source.as_os_str() == DEFAULTS {
        "the default jobs (no cluster file named)".to_string()
    } else {
        format!("cluster `{}` ({})", cluster.name, cluster.source.display())
    };
    let _ = writeln!(
        out,
        "# promfed rbac for {about}: the least its jobs need\n# ({}), for the service account {namespace}/{account_name}.\n#",
        jobs.join(", ")
    );
    if needs.iter().any(|n| n.object.rbac_name() == "nodes/proxy") {
        out.push_str(NODES_PROXY_WARNING);
    }
    match &kind {
        TokenKind::Secret => {
            let _ = write!(
                out,
                "# Apply it with `kubectl apply -f FILE`, then take the long-lived token and\n# the CA from the Secret below:\n#\n#   kubectl -n {namespace} get secret {NAME}-token -o jsonpath='{{.data.token}}' | base64 -d > token\n#   kubectl -n {namespace} get secret {NAME}-token -o jsonpath='{{.data.ca\\.crt}}' | base64 -d > ca.crt\n#\n# and install them as the README shows (or write a kubeconfig with them and\n# run `promfed add-cluster NAME --kubeconfig FILE`). `promfed doctor` then\n# asks the API server for each of these permissions.\n"
            );
            let _ = write!(
                out,
                "---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {NAME}\n  namespace: {namespace}\n---\napiVersion: v1\nkind: Secret\ntype: kubernetes.io/service-account-token\nmetadata:\n  name: {NAME}-token\n  namespace: {namespace}\n  annotations:\n    kubernetes.io/service-account.name: {NAME}\n"
            );
        }
        TokenKind::Request { base } => {
            let shown: String = base.chars().filter(|c| !c.is_control()).collect();
            let _ = write!(
                out,
                "# TokenRequest: no long-lived token. promfed signs in as `{shown}` (the\n# identity of the cluster file's token_file or client certificate: a\n# certificate's CN, or system:serviceaccount:NS:NAME for a token) and asks\n# for {account_name}'s tokens, which last [token_request] expiration and are\n# renewed before they end. `{shown}` may do nothing else: the scrape\n# permissions below are the service account's. Apply it with\n# `kubectl apply -f FILE`; `promfed doctor` then asks the API server for\n# each of these permissions.\n"
            );
            let _ = write!(
                out,
                "---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {account_name}\n  namespace: {namespace}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {account_name}-token-request\n  namespace: {namespace}\nrules:\n- apiGroups: [\"\"]\n  resources: [\"serviceaccounts/token\"]\n  resourceNames: [\"{account_name}\"]\n  verbs: [\"create\"]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {account_name}-token-request\n  namespace: {namespace}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: {account_name}-token-request\nsubjects:\n{}",
                subject(base)
            );
        }
    }
    let mut by_scope: BTreeMap<Option<&str>, Vec<&Need>> = BTreeMap::new();
    for need in &needs {
        by_scope
            .entry(need.namespace.as_deref())
            .or_default()
            .push(need);
    }
    for (scope, needs) in by_scope {
        let (role, binding, meta) = match scope {
            None => (
                "ClusterRole",
                "ClusterRoleBinding",
                format!("  name: {NAME}\n"),
            ),
            Some(ns) => (
                "Role",
                "RoleBinding",
                format!("  name: {NAME}\n  namespace: {ns}\n"),
            ),
        };
        let _ = write!(
            out,
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: {role}\nmetadata:\n{meta}rules:\n{}",
            rules(&needs)
        );
        let _ = write!(
            out,
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: {binding}\nmetadata:\n{meta}roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: {role}\n  name: {NAME}\nsubjects:\n- kind: ServiceAccount\n  name: {account_name}\n  namespace: {namespace}\n"
        );
    }
    out
}

const NODES_PROXY_WARNING: &str = "\
# WARNING: `get nodes/proxy` reaches the whole kubelet API through the API
# server, and because the kubelet authorizes a websocket's upgrade as `get`,
# it also allows exec and attach into every pod on every node. Give this
# identity to nothing but the monitoring host, and keep its token as you
# would an admin's. Without it, kubelet and cAdvisor cannot be scraped (no
# container CPU and memory, no kubelet health); disable [kubelet] and
# [cadvisor] in the cluster file and this rule goes away.
#
";

/// One rule per object, its verbs together, in a stable order.
fn rules(needs: &[&Need]) -> String {
    let mut verbs: BTreeMap<&Object, Vec<&str>> = BTreeMap::new();
    for need in needs {
        verbs.entry(&need.object).or_default().push(need.verb);
    }
    let mut out = String::new();
    for (object, verbs) in verbs {
        let verbs: Vec<String> = verbs.iter().map(|v| format!("\"{v}\"")).collect();
        match object {
            Object::Resource { group, .. } => {
                let _ = write!(
                    out,
                    "- apiGroups: [\"{group}\"]\n  resources: [\"{}\"]\n  verbs: [{}]\n",
                    object.rbac_name(),
                    verbs.join(", ")
                );
            }
            Object::Path(path) => {
                let _ = write!(
                    out,
                    "- nonResourceURLs: [\"{path}\"]\n  verbs: [{}]\n",
                    verbs.join(", ")
                );
            }
        }
    }
    out
}

/// The cluster `promfed rbac` writes for: a cluster file (by path or by
/// name in the clusters folder), or one with the defaults (promfed.toml's
/// `[defaults]` over the built-in ones), each with `defaults` under it.
pub fn cluster_for(
    clusters_dir: &Path,
    wanted: Option<&str>,
    defaults: &Defaults,
) -> Result<Cluster, String> {
    let Some(wanted) = wanted else {
        let text = "api_server = \"https://kubernetes.example:6443\"\ntoken_file = \"token\"\nca_file = \"ca.crt\"\n";
        let source = SourceText::new(DEFAULTS, text);
        return Cluster::parse_with(&source, "default", defaults)
            .map(|p| p.cluster)
            .map_err(|b| {
                let problems: Vec<String> = b.problems.iter().map(|p| p.headline()).collect();
                format!(
                    "the defaults do not make a cluster: {}",
                    problems.join("; ")
                )
            });
    };
    let by_path = Path::new(wanted);
    let file = if by_path.is_file() {
        by_path.to_path_buf()
    } else {
        clusters_dir.join(format!("{wanted}.toml"))
    };
    crate::config::inventory::read_definition(&file, defaults)
        .map_err(|problems| problems.join("; "))
}
