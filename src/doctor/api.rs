//! Through the API server: who the credentials are, what they may do, and
//! one sample scrape through each proxy path the cluster's jobs use.

use std::time::Instant;

use serde::Deserialize;

use super::Checks;
use super::load::{self, Sample};
use crate::config::cluster::Cluster;
use crate::config::federate::Source;
use crate::config::settings::Settings;
use crate::discovery::{self, DiscoveryError, KubeClient, Permission};
use crate::output::counted;
use crate::permissions::{self, Need, Object};
use crate::render::limits::{self as job_limits, JobLimits};
use crate::targets::{self, JobKind};

/// Days left under which a token is warned about.
const TOKEN_WARN_DAYS: i64 = 7;

/// The fix for every missing permission.
fn grant(cluster: &Cluster) -> String {
    format!(
        "grant it: `promfed rbac {}` prints the role this cluster needs (kubectl apply -f it)",
        cluster.source.display()
    )
}

pub async fn check(cluster: &Cluster, settings: &Settings, checks: &mut Checks) {
    if cluster.auth.source.is_some() {
        issued_credential(cluster, settings, checks);
    } else {
        token_expiry(cluster, checks);
    }
    // As long as discovery itself may take: a large cAdvisor answer
    // through a slow API server is still a good answer.
    let timeout = settings.discovery_limits().request_timeout;
    let client = match KubeClient::new(cluster, timeout) {
        Ok(c) => c,
        Err(e) => {
            checks.fail("identity", e.to_string(), "fix the file the message names");
            return;
        }
    };
    if !identity(cluster, &client, checks).await {
        return;
    }
    for need in permissions::needed(cluster, settings.discovery) {
        permission(cluster, &client, &need, checks).await;
    }
    scrapes(cluster, settings, &client, checks).await;
}

/// A credential promfed renews (`[exec]`, `[token_request]`): obtained
/// yet, still valid, renewed before it expires?
fn issued_credential(cluster: &Cluster, settings: &Settings, checks: &mut Checks) {
    let files = crate::credentials::file::Files::of(&settings.credentials_dir(), &cluster.name);
    let source = cluster.auth.source.as_ref().map_or("", |s| s.word());
    let shown = |t: i64| jiff::Timestamp::from_second(t).map_or(t.to_string(), |t| t.to_string());
    let see =
        "see `promfed status` and the journal (`journalctl -u promfed`) for why renewing fails";
    let Some(meta) = files.meta() else {
        checks.fail(
            "credential",
            format!(
                "no credential from [{source}] in {} yet",
                files.dir.display()
            ),
            "start the daemon (`systemctl start promfed`) or run `promfed apply`, which obtain it",
        );
        return;
    };
    let now = jiff::Timestamp::now().as_second();
    match (meta.expires, meta.next_renewal) {
        (Some(exp), _) if exp <= now => checks.fail(
            "credential",
            format!("the credential from [{source}] expired at {}", shown(exp)),
            see,
        ),
        (Some(exp), Some(next)) if next >= exp => checks.warn(
            "credential",
            format!(
                "the credential from [{source}] expires at {}, before the next renewal attempt at {}",
                shown(exp),
                shown(next)
            ),
            see,
        ),
        (exp, next) => checks.pass(
            "credential",
            format!(
                "renewed by promfed from [{source}]{}{}",
                exp.map_or(", with no expiry".into(), |e| format!(", valid until {}", shown(e))),
                next.map_or(String::new(), |n| format!(", next renewal at {}", shown(n)))
            ),
        ),
    }
}

/// The token's own expiry (JWT `exp`), without asking the server.
fn token_expiry(cluster: &Cluster, checks: &mut Checks) {
    let Some(file) = &cluster.auth.token_file else {
        return;
    };
    let shown = file.display();
    let renew = format!(
        "write a new token to {shown}: a long-lived one from a kubernetes.io/service-account-token Secret (`promfed rbac` makes one), or `kubectl create token SERVICEACCOUNT --duration=8760h`"
    );
    let Some(exp) = crate::jwt::file_expiry(file) else {
        checks.pass(
            "token",
            format!("{shown} has no expiry of its own (not a JWT, or no `exp`)"),
        );
        return;
    };
    let now = jiff::Timestamp::now().as_second();
    let when = jiff::Timestamp::from_second(exp).map_or(exp.to_string(), |t| t.to_string());
    let days = (exp - now).div_euclid(86_400);
    if exp <= now {
        checks.fail(
            "token",
            format!("the token in {shown} expired at {when}"),
            renew,
        );
    } else if days < TOKEN_WARN_DAYS {
        checks.warn(
            "token",
            format!("the token in {shown} expires in {days} days ({when})"),
            renew,
        );
    } else {
        checks.pass(
            "token",
            format!("the token in {shown} expires at {when} (in {days} days)"),
        );
    }
}

#[derive(Deserialize)]
struct Review {
    #[serde(default)]
    status: ReviewStatus,
}

#[derive(Deserialize, Default)]
struct ReviewStatus {
    #[serde(default, rename = "userInfo")]
    user_info: UserInfo,
    #[serde(default)]
    allowed: bool,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize, Default)]
struct UserInfo {
    #[serde(default)]
    username: String,
    #[serde(default)]
    groups: Vec<String>,
}

const CREATE_REVIEW: Permission = Permission {
    verb: "create",
    resource: "selfsubjectreviews",
};

/// Who the credentials authenticate as; whether the server accepts them.
async fn identity(cluster: &Cluster, client: &KubeClient, checks: &mut Checks) -> bool {
    // authentication.k8s.io/v1 since Kubernetes 1.28; beta and alpha before.
    for version in ["v1", "v1beta1", "v1alpha1"] {
        let body = serde_json::json!({
            "apiVersion": format!("authentication.k8s.io/{version}"),
            "kind": "SelfSubjectReview",
        });
        let path = format!("/apis/authentication.k8s.io/{version}/selfsubjectreviews");
        match client.post::<Review>(&path, &body, CREATE_REVIEW).await {
            Ok(Some(review)) => {
                let user = review.status.user_info;
                checks.pass(
                    "identity",
                    format!(
                        "authenticated as {} (groups: {})",
                        user.username,
                        user.groups.join(", ")
                    ),
                );
                return true;
            }
            Ok(None) => continue,
            Err(DiscoveryError::Unauthorized { .. }) => {
                let what = match &cluster.auth.token_file {
                    Some(t) => format!("the token in {}", t.display()),
                    None => "the client certificate".to_string(),
                };
                checks.fail(
                    "identity",
                    format!("the API server does not accept {what} (401 Unauthorized)"),
                    "the credentials are wrong, expired, or their service account was deleted: make new ones (`promfed rbac` and `promfed add-cluster`)",
                );
                return false;
            }
            Err(e) => {
                checks.warn(
                    "identity",
                    format!("cannot ask who the credentials are: {e}"),
                    "nothing to do if the checks below pass",
                );
                return true;
            }
        }
    }
    // Before 1.26 there is no SelfSubjectReview: the token's own claim.
    let claimed = cluster
        .auth
        .token_file
        .as_deref()
        .and_then(crate::jwt::file_subject);
    checks.warn(
        "identity",
        format!(
            "this API server has no SelfSubjectReview (Kubernetes before 1.26){}",
            claimed.map_or(String::new(), |s| format!("; the token says it is {s}"))
        ),
        "nothing to do: the permission checks below still ask the server",
    );
    true
}

/// Asks whether the credentials may do `need` (SelfSubjectAccessReview).
async fn permission(cluster: &Cluster, client: &KubeClient, need: &Need, checks: &mut Checks) {
    let spec = match &need.object {
        Object::Resource {
            group,
            resource,
            subresource,
        } => serde_json::json!({"resourceAttributes": {
            "verb": need.verb,
            "group": group,
            "resource": resource,
            "subresource": subresource.unwrap_or_default(),
            "namespace": need.namespace.as_deref().unwrap_or_default(),
        }}),
        Object::Path(path) => {
            serde_json::json!({"nonResourceAttributes": {"verb": need.verb, "path": path}})
        }
    };
    let body = serde_json::json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": spec,
    });
    let asked = client
        .post::<Review>(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            &body,
            Permission {
                verb: "create",
                resource: "selfsubjectaccessreviews",
            },
        )
        .await;
    match asked {
        Ok(Some(review)) if review.status.allowed => {
            checks.pass("permission", format!("may {need} ({})", need.why))
        }
        Ok(Some(review)) => checks.fail(
            "permission",
            format!(
                "may NOT {need}, needed for {}{}",
                need.why,
                if review.status.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", review.status.reason)
                }
            ),
            grant(cluster),
        ),
        Ok(None) => checks.warn(
            "permission",
            format!("cannot ask whether it may {need}: the server has no SelfSubjectAccessReview"),
            "compare the identity's role with `promfed rbac`",
        ),
        Err(e) => checks.warn(
            "permission",
            format!("cannot ask whether it may {need}: {e}"),
            "compare the identity's role with `promfed rbac`",
        ),
    }
}

/// Discovers the cluster as the daemon would, then scrapes one target of
/// each job through its proxy path.
async fn scrapes(cluster: &Cluster, settings: &Settings, client: &KubeClient, checks: &mut Checks) {
    let found = match discovery::discover(cluster, settings.discovery_limits()).await {
        Ok(found) => {
            let found = found.targets;
            let ne = &cluster.node_exporter;
            let none_ready = if ne.component.enabled && found.node_exporters.is_empty() {
                format!(
                    " (0 ready endpoints behind {}/{})",
                    ne.namespace, ne.service
                )
            } else {
                String::new()
            };
            checks.pass(
                "discovery",
                format!(
                    "{}, {}{none_ready}{}",
                    counted(found.nodes.len(), "node", "nodes"),
                    counted(
                        found.node_exporters.len(),
                        "node-exporter pod",
                        "node-exporter pods"
                    ),
                    if cluster.pods.is_some() {
                        format!(
                            ", {}",
                            counted(found.pods.len(), "annotated pod", "annotated pods")
                        )
                    } else {
                        String::new()
                    }
                ),
            );
            exporter_discovery(cluster, &found, checks);
            monitor_discovery(cluster, &found, checks);
            Some(found)
        }
        Err(e) => {
            let fix = match &e {
                DiscoveryError::Forbidden { .. } => grant(cluster),
                DiscoveryError::NotFound { .. } | DiscoveryError::NoSuchPort { .. } => format!(
                    "check [node_exporter] namespace, service and port in {} against the cluster (kubectl get endpointslices -A)",
                    cluster.source.display()
                ),
                _ => "see the message; `promfed status` shows the daemon's view".to_string(),
            };
            checks.fail("discovery", e.to_string(), fix);
            None
        }
    };
    // Paths after the API server's prefix, which the client adds.
    let prefix = &cluster.api_server.path_prefix;
    let mut samples = Vec::new();
    for kind in JobKind::ALL.into_iter().filter(|k| k.enabled_in(cluster)) {
        let target = match kind {
            JobKind::Apiserver => Some(("the API server".to_string(), "/metrics".to_string())),
            JobKind::Federate => federate_path(cluster),
            _ => match &found {
                // The targets file's path is Prometheus's: prefix included.
                Some(found) => targets::first_target(cluster, found, kind).map(|(i, p)| {
                    let relative = p.strip_prefix(prefix.as_str()).unwrap_or(&p).to_string();
                    (i, relative)
                }),
                None => continue,
            },
        };
        let Some((instance, path)) = target else {
            if kind.discovered() {
                checks.warn(
                    "scrape",
                    format!("{}: no target found, nothing to sample", kind.slug()),
                    "nothing to do if the cluster really has none",
                );
            }
            continue;
        };
        let job = Job::Builtin(kind);
        let limits = job_limits::builtin(cluster, kind, settings);
        let bytes = sample(cluster, client, job, &instance, &path, &limits, checks).await;
        samples.extend(bytes.map(|bytes| Sample {
            job: job.name(),
            bytes,
            targets: targets_of(job, found.as_ref()),
            interval: limits.interval.as_duration(),
        }));
    }
    for e in &cluster.exporters {
        let Some(found) = &found else { break };
        let Some((instance, path)) = targets::first_exporter_target(cluster, found, e) else {
            checks.warn(
                "scrape",
                format!("exporter {}: no target found, nothing to sample", e.job),
                "see the discovery line above",
            );
            continue;
        };
        let relative = path.strip_prefix(prefix.as_str()).unwrap_or(&path);
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(
                e.params
                    .iter()
                    .flat_map(|(k, vs)| vs.iter().map(move |v| (k, v))),
            )
            .finish();
        let path = match query.as_str() {
            "" => relative.to_string(),
            q => format!("{relative}?{q}"),
        };
        let job = Job::Exporter(&e.job);
        let limits = job_limits::exporter(e, settings);
        let bytes = sample(cluster, client, job, &instance, &path, &limits, checks).await;
        samples.extend(bytes.map(|bytes| Sample {
            job: job.name(),
            bytes,
            targets: targets_of(job, Some(found)),
            interval: limits.interval.as_duration(),
        }));
    }
    proxy_load(&samples, checks);
}

/// The bytes per second all targets make the API server proxy, from the
/// samples; warned past `load::WARN_BYTES_PER_SECOND`.
fn proxy_load(samples: &[Sample], checks: &mut Checks) {
    if samples.is_empty() {
        return;
    }
    let (total, line) = load::projected(samples);
    if total > load::WARN_BYTES_PER_SECOND {
        checks.warn(
            "load",
            format!("{line}: more than {}/s", load::human(load::WARN_BYTES_PER_SECOND)),
            "every byte is proxied by the API server, which does not throttle proxied requests: scrape the largest jobs less often (scrape_interval in their section), drop more series, or scrape them without the proxy",
        );
    } else {
        checks.pass("load", line);
    }
}

/// How many targets a job has: its discovered ones, or its one static.
fn targets_of(job: Job<'_>, found: Option<&targets::ClusterTargets>) -> usize {
    let Some(found) = found else { return 1 };
    match job {
        Job::Builtin(JobKind::Kubelet | JobKind::Cadvisor) => found.nodes.len(),
        Job::Builtin(JobKind::NodeExporter) => found.node_exporters.len(),
        Job::Builtin(JobKind::Pods) => found.pods.len(),
        Job::Builtin(JobKind::Apiserver | JobKind::Federate) => 1,
        Job::Exporter(name) => found.exporters.get(name).map_or(0, Vec::len),
    }
}

/// One line per exporter: how many targets, or why none.
fn exporter_discovery(cluster: &Cluster, found: &targets::ClusterTargets, checks: &mut Checks) {
    for e in &cluster.exporters {
        let n = found.exporters.get(&e.job).map_or(0, Vec::len);
        let note = found
            .exporter_notes
            .iter()
            .find(|note| note.starts_with(&format!("exporter {}:", e.job)));
        match note {
            Some(note) => checks.warn(
                "discovery",
                note.clone(),
                format!(
                    "check [exporter.{}] namespace, service or selector, and port in {} against the cluster (kubectl get endpointslices -n NAMESPACE --show-labels)",
                    e.job,
                    cluster.source.display()
                ),
            ),
            None => checks.pass(
                "discovery",
                format!(
                    "exporter {}: {} in {}",
                    e.job,
                    counted(n, "target", "targets"),
                    e.namespaces.join(", ")
                ),
            ),
        }
    }
}

/// `[monitors]`: one line with the jobs found, then one warning per
/// monitor, endpoint or field skipped (the notes `status.json` shows as
/// `discovery.monitors.skipped`), each naming what it skipped and why.
fn monitor_discovery(cluster: &Cluster, found: &targets::ClusterTargets, checks: &mut Checks) {
    let Some(m) = &found.monitors else { return };
    let targets: usize = m.targets.values().map(Vec::len).sum();
    checks.pass(
        "monitors",
        format!(
            "{}, {}",
            counted(m.jobs.len(), "monitor job", "monitor jobs"),
            counted(targets, "target", "targets")
        ),
    );
    for note in &m.notes {
        let fix = if note.contains("serves no monitoring.coreos.com/v1") {
            format!(
                "install prometheus-operator's CRDs in the cluster, or remove [monitors] from {}",
                cluster.source.display()
            )
        } else {
            format!(
                "scrape it another way (an [exporter.<job>] in {}, or a monitor without in-cluster Secrets), or leave it: the other monitors and jobs go on",
                cluster.source.display()
            )
        };
        checks.warn("monitors", note.clone(), fix);
    }
}

/// A job to sample: a built-in one, or an exporter by its job name.
#[derive(Clone, Copy)]
enum Job<'a> {
    Builtin(JobKind),
    Exporter(&'a str),
}

impl Job<'_> {
    fn name(&self) -> String {
        match self {
            Job::Builtin(kind) => kind.slug().to_string(),
            Job::Exporter(job) => format!("exporter {job}"),
        }
    }
}

/// `[federate]` through the service proxy (a URL source is not reached
/// through the API server, and is not sampled), with its selectors.
fn federate_path(cluster: &Cluster) -> Option<(String, String)> {
    let f = cluster.federate.as_ref()?;
    let Source::Service {
        namespace, service, ..
    } = &f.source
    else {
        return None;
    };
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(f.matchers.iter().map(|m| ("match[]", m)))
        .finish();
    Some((
        format!("{namespace}/{service}"),
        format!("{}?{query}", f.service_path()?),
    ))
}

async fn sample(
    cluster: &Cluster,
    client: &KubeClient,
    job_of: Job<'_>,
    instance: &str,
    path: &str,
    limits: &JobLimits,
    checks: &mut Checks,
) -> Option<u64> {
    let job = job_of.name();
    let started = Instant::now();
    let shown_path = path.split('?').next().unwrap_or(path);
    match client.fetch(path, "text/plain;version=0.0.4").await {
        Ok((200, body)) => {
            let took = started.elapsed();
            let bytes = body.len() as u64;
            let l = &limits.limits;
            let detail = format!(
                "{job} {instance}: {} in {} ms through {shown_path} (body_size_limit {}, scrape_timeout {})",
                load::human(bytes as f64),
                took.as_millis(),
                l.body_size_limit,
                l.scrape_timeout
            );
            match load::near_limits(bytes, took, l) {
                Some(why) => checks.warn(
                    "scrape",
                    format!("{detail}: {why}"),
                    format!("raise body_size_limit or scrape_timeout in the job's section of {} (or [defaults]), or make the answer smaller (drop series at the source)", cluster.source.display()),
                ),
                None => checks.pass("scrape", detail),
            }
            return Some(bytes);
        }
        Err(DiscoveryError::TooMuch { .. })
            if (1..=discovery::MAX_RESPONSE_BYTES as u64)
                .contains(&limits.limits.body_size_limit.bytes()) =>
        {
            checks.warn(
                "scrape",
                format!(
                    "{job} {instance}: {shown_path} answered more than {}, over its body_size_limit {}: Prometheus fails this scrape (\"body size limit exceeded\")",
                    load::human(discovery::MAX_RESPONSE_BYTES as f64),
                    limits.limits.body_size_limit
                ),
                format!("raise body_size_limit in the job's section of {}, or make the answer smaller", cluster.source.display()),
            );
        }
        Ok((status, body)) => {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(str::to_string))
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
                });
            let message = client.redact(message.trim());
            let proxied = !matches!(
                job_of,
                Job::Builtin(JobKind::Kubelet | JobKind::Cadvisor | JobKind::Apiserver)
            );
            if proxied
                && matches!(status, 401 | 403)
                && !crate::proxy_auth::is_api_server_status(&body)
            {
                checks.fail(
                    "scrape",
                    format!(
                        "{job} {instance}: {shown_path} answered {status} from the target itself, not the API server: {}",
                        crate::proxy_auth::CAUSE
                    ),
                    crate::proxy_auth::FIX,
                );
                return None;
            }
            let fix = match (status, job_of) {
                (403, _) => grant(cluster),
                (502..=504, Job::Builtin(JobKind::Kubelet | JobKind::Cadvisor)) => format!(
                    "the API server cannot reach the kubelet on node {instance} (port 10250): is the node Ready, and may the control plane reach it?"
                ),
                (502..=504, Job::Builtin(JobKind::Federate)) => format!(
                    "the service {instance} has no ready endpoint on that port: check the in-cluster Prometheus and [federate] port in {}",
                    cluster.source.display()
                ),
                (502..=504, _) => format!(
                    "the API server cannot reach pod {instance}'s port: is the pod running and listening there? (check the port in {})",
                    cluster.source.display()
                ),
                _ => "see the message".to_string(),
            };
            checks.fail(
                "scrape",
                format!("{job} {instance}: {shown_path} answered {status}: {message}"),
                fix,
            );
        }
        Err(e) => checks.fail(
            "scrape",
            format!("{job} {instance}: {shown_path}: {e}"),
            "see the message",
        ),
    }
    None
}
