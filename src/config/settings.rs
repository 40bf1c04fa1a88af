//! `promfed.toml`: where things are and how to reach Prometheus.

use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::access::Identity;

use crate::config::cluster::Cluster;
use crate::config::defaults::Defaults;
use crate::config::diagnostic::{Diagnostic, SourceText};
use crate::config::dialect::Dialect;
use crate::config::duration::PromDuration;
use crate::config::toml_fields::{self, Fields, Problems, Spanned};

pub const DEFAULT_CONFIG: &str = "/etc/promfed/promfed.toml";
const DEFAULT_STATE_DIR: &str = "/var/lib/promfed";
const DEFAULT_MAX_TARGETS: usize = 5000;

#[derive(Debug, Clone)]
pub struct Settings {
    /// The settings file itself.
    pub source: PathBuf,
    pub clusters_dir: PathBuf,
    pub state_dir: PathBuf,
    pub scrape_interval: PromDuration,
    pub scrape_timeout: Option<PromDuration>,
    pub discovery: DiscoveryMode,
    /// Targets per job of one cluster; a cluster with more fails discovery
    /// alone and keeps its last targets.
    pub max_targets: usize,
    pub daemon: DaemonSettings,
    pub prometheus: ServiceSettings,
    /// Absent: Alertmanager is not managed.
    pub alertmanager: Option<ServiceSettings>,
    /// Several hosts sharing the clusters (`[shard]`); `None`: this host
    /// scrapes them all.
    pub shard: Option<super::shard::ShardSettings>,
    /// `[defaults]`: what every cluster file inherits.
    pub defaults: Defaults,
    /// `[prometheus] token_files`: how a token that changes reaches
    /// Prometheus (`Settings::new_file_per_token`).
    pub token_files: TokenFiles,
    /// Asked of promtool on first use (`Settings::dialect`).
    dialect: std::sync::OnceLock<Dialect>,
}

/// How `promfed run` paces itself.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Quiet time after the last file event before applying.
    pub debounce: Duration,
    /// A burst of events never delays an apply longer than this.
    pub max_delay: Duration,
    /// How often each cluster is listed again although its watches run
    /// (the safety net).
    pub resync_interval: Duration,
    /// Metrics in Prometheus text format for node-exporter's textfile
    /// collector; `None` when disabled.
    pub metrics_file: Option<PathBuf>,
}

/// How the generated jobs find their targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryMode {
    /// promfed discovers and writes `file_sd` JSON: works with any Prometheus.
    FileSd,
    /// Prometheus discovers by itself (`kubernetes_sd_configs`); needs a build
    /// that has it, which Debian 12's 2.42 does not.
    KubernetesSd,
}

/// How Prometheus is given a bearer token that changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFiles {
    /// `NewFile` for Prometheus 3 (by promtool's version), `Reread` for 2.
    Auto,
    /// The configuration names the token file itself, which Prometheus
    /// reads again at every scrape.
    Reread,
    /// Each new token is a new file under the state folder, named by the
    /// configuration and reloaded (`credentials::published`): for builds
    /// that read a `credentials_file` once and keep it.
    NewFile,
}

/// A program whose configuration promfed manages: Prometheus or Alertmanager.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub config_file: PathBuf,
    pub base_file: PathBuf,
    /// `promtool` or `amtool`.
    pub check_tool: PathBuf,
    pub url: Url,
    pub reload: ReloadMethod,
    /// The user the program runs as, looked up once here: every file its
    /// config names must be readable by it.
    pub user: Identity,
    pub check_timeout: Duration,
    pub verify_timeout: Duration,
}

/// What differs between the two managed programs' settings.
struct ServiceDefaults {
    config_file: &'static str,
    base_file: &'static str,
    tool_key: &'static str,
    tool: &'static str,
    url: &'static str,
    reload: &'static str,
    process_name: &'static str,
    /// What the program's process may be called (a pid file's process must
    /// be one of these): the Debian and the upstream names.
    program_names: &'static [&'static str],
}

const PROMETHEUS_DEFAULTS: ServiceDefaults = ServiceDefaults {
    config_file: "/etc/prometheus/prometheus.yml",
    base_file: "/etc/promfed/prometheus.base.yml",
    tool_key: "promtool",
    tool: "/usr/bin/promtool",
    url: "http://127.0.0.1:9090",
    reload: "signal",
    process_name: "prometheus",
    program_names: &["prometheus"],
};

const ALERTMANAGER_DEFAULTS: ServiceDefaults = ServiceDefaults {
    config_file: "/etc/prometheus/alertmanager.yml",
    base_file: "/etc/promfed/alertmanager.base.yml",
    tool_key: "amtool",
    tool: "/usr/bin/amtool",
    url: "http://127.0.0.1:9093",
    // Alertmanager's /-/reload is always on.
    reload: "http",
    process_name: "prometheus-alertmanager",
    program_names: &["prometheus-alertmanager", "alertmanager"],
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadMethod {
    /// `POST /-/reload` (needs `--web.enable-lifecycle`).
    Http,
    /// `SIGHUP` to the process found through a pid file or by name.
    Signal(ProcessRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessRef {
    /// A pid file, and the names its process may go by.
    PidFile(PathBuf, &'static [&'static str]),
    Name(String),
}

impl Settings {
    /// Reads and validates the settings file; every problem is reported.
    /// Where the state folder is, read as leniently as possible from a
    /// settings file that may not be valid: `promfed status` needs only it.
    pub fn state_dir_of(path: &Path) -> PathBuf {
        let path = normalize(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
        let base_dir = path.parent().unwrap_or(Path::new("/"));
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| toml_edit::Document::parse(text).ok())
            .and_then(|doc| Some(doc.get("state_dir")?.as_str()?.to_string()))
            .filter(|dir| !dir.is_empty())
            .map_or_else(
                || PathBuf::from(DEFAULT_STATE_DIR),
                |dir| normalize(&base_dir.join(dir)),
            )
    }

    pub fn load(path: &Path) -> Result<Settings, Vec<Diagnostic>> {
        // Everything derived from this path ends up in the Prometheus config,
        // where a relative path would mean something else.
        let path = &normalize(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
        let text = crate::fsutil::read_regular(path, crate::fsutil::MAX_TOML_FILE)
            .and_then(|b| String::from_utf8(b).map_err(|_| std::io::ErrorKind::InvalidData.into()))
            .map_err(|e| {
                vec![Diagnostic::file(
                    path,
                    None,
                    format!("cannot read the settings file: {e}"),
                )]
            })?;
        Self::parse(&SourceText::new(path, text))
    }

    pub fn parse(source: &SourceText) -> Result<Settings, Vec<Diagnostic>> {
        let doc = toml_fields::parse(source).map_err(|d| vec![d])?;
        let mut p = Problems::new(source);
        let base_dir = source.path.parent().unwrap_or(Path::new("/"));
        let mut root = Fields::root(&doc);

        let clusters_dir = path_or(
            &mut root,
            &mut p,
            "clusters_dir",
            base_dir,
            "/etc/promfed.d",
        );
        let state_dir = path_or(&mut root, &mut p, "state_dir", base_dir, DEFAULT_STATE_DIR);
        let scrape_interval = duration(&mut root, &mut p, "scrape_interval")
            .unwrap_or_else(|| PromDuration::parse("30s").expect("valid default"));
        let scrape_timeout = match root.get::<String>(&mut p, "scrape_timeout") {
            Some(s) => match PromDuration::parse(&s.value) {
                Ok(t) if t > scrape_interval => {
                    p.at(
                        s.span,
                        "scrape_timeout",
                        format!("must not be longer than scrape_interval ({scrape_interval})"),
                    );
                    None
                }
                Ok(t) => Some(t),
                Err(e) => {
                    p.at(s.span, "scrape_timeout", e);
                    None
                }
            },
            None => None,
        };
        let discovery = match root.get::<String>(&mut p, "discovery") {
            None => DiscoveryMode::FileSd,
            Some(s) => match s.value.as_str() {
                "file_sd" => DiscoveryMode::FileSd,
                "kubernetes_sd" => DiscoveryMode::KubernetesSd,
                other => {
                    p.at(
                        s.span,
                        "discovery",
                        format!("`{other}` is not one of: file_sd, kubernetes_sd"),
                    );
                    DiscoveryMode::FileSd
                }
            },
        };
        let max_targets = match root.get::<i64>(&mut p, "max_targets") {
            None => DEFAULT_MAX_TARGETS,
            Some(n) => match usize::try_from(n.value) {
                Ok(v) if v > 0 => v,
                _ => {
                    p.at(n.span, "max_targets", "must be a positive number");
                    DEFAULT_MAX_TARGETS
                }
            },
        };
        let daemon = DaemonSettings {
            debounce: duration(&mut root, &mut p, "debounce")
                .map_or(Duration::from_millis(250), |d| d.as_duration()),
            max_delay: duration(&mut root, &mut p, "max_delay")
                .map_or(Duration::from_secs(2), |d| d.as_duration()),
            resync_interval: duration(&mut root, &mut p, "resync_interval")
                .map_or(Duration::from_secs(1800), |d| d.as_duration()),
            metrics_file: match root.get::<String>(&mut p, "metrics_file") {
                Some(s) if s.value.is_empty() => None,
                Some(s) => Some(normalize(&base_dir.join(s.value))),
                None => Some(PathBuf::from(
                    "/var/lib/prometheus/node-exporter/promfed.prom",
                )),
            },
        };
        let mut token_files = TokenFiles::Auto;
        let prometheus = match root.table(&mut p, "prometheus") {
            Some(mut t) => {
                let s = service_settings(&mut t, &mut p, base_dir, &PROMETHEUS_DEFAULTS);
                token_files = read_token_files(&mut t, &mut p);
                t.finish(&mut p);
                s
            }
            None => {
                let empty = toml_edit::Document::parse(String::new()).expect("empty document");
                service_settings(
                    &mut Fields::root(&empty),
                    &mut p,
                    base_dir,
                    &PROMETHEUS_DEFAULTS,
                )
            }
        };
        let alertmanager = root.table(&mut p, "alertmanager").map(|mut t| {
            let s = service_settings(&mut t, &mut p, base_dir, &ALERTMANAGER_DEFAULTS);
            t.finish(&mut p);
            s
        });
        let shard = super::shard::read(&mut root, &mut p);
        // Allowed here; its keys are the cluster reader's to judge.
        let _ = root.table(&mut p, "defaults");
        let defaults = read_defaults(source, &doc, &mut p);
        if let Some(shard) = &shard {
            replica_label_not_inherited(&doc, shard, &mut p);
        }
        root.finish(&mut p);

        // A missing service means its problem was reported.
        let Some(prometheus) = prometheus.filter(|_| p.is_empty()) else {
            return Err(p.into_sorted());
        };
        Ok(Settings {
            source: source.path.clone(),
            clusters_dir,
            state_dir,
            scrape_interval,
            scrape_timeout,
            discovery,
            max_targets,
            daemon,
            prometheus,
            alertmanager: alertmanager.flatten(),
            shard,
            defaults,
            token_files,
            dialect: std::sync::OnceLock::new(),
        })
    }

    /// How far each cluster's discovery may go: 10 s a request, 60 s in
    /// all, `max_targets` targets per job.
    pub fn discovery_limits(&self) -> crate::discovery::Limits {
        crate::discovery::Limits {
            request_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(60),
            max_targets: self.max_targets,
        }
    }

    /// Which Prometheus the generated file is for, as its promtool says.
    pub fn dialect(&self) -> Dialect {
        *self
            .dialect
            .get_or_init(|| Dialect::of(&self.prometheus.check_tool, &self.state_dir))
    }

    /// Whether every new token goes to a new file (`TokenFiles::NewFile`).
    /// `auto` says yes for Prometheus 3: Debian's 3.5.3+ds1 (built with
    /// prometheus/common 0.69) and upstream 3.13 and later read a
    /// `credentials_file` once per scrape loop and keep that token, where
    /// 2.x and upstream 3.0 to 3.12 read it at every scrape. A new file
    /// costs a reload per new token; a kept token costs every target.
    pub fn new_file_per_token(&self) -> bool {
        match self.token_files {
            TokenFiles::Reread => false,
            TokenFiles::NewFile => true,
            TokenFiles::Auto => self.dialect() == Dialect::Prometheus3,
        }
    }

    /// Where discovered targets of one cluster are written.
    pub fn targets_dir(&self) -> PathBuf {
        self.state_dir.join("targets")
    }

    /// Last good copies: the previous Prometheus config and each cluster's
    /// last applied definition.
    /// Credentials promfed obtains itself (`[exec]`, `[token_request]`).
    pub fn credentials_dir(&self) -> PathBuf {
        self.state_dir.join("credentials")
    }

    pub fn last_good_dir(&self) -> PathBuf {
        self.state_dir.join("last-good")
    }
}

fn service_settings(
    t: &mut Fields,
    p: &mut Problems,
    base_dir: &Path,
    d: &ServiceDefaults,
) -> Option<ServiceSettings> {
    let config_file = path_or(t, p, "config_file", base_dir, d.config_file);
    let base_file = path_or(t, p, "base_file", base_dir, d.base_file);
    let check_tool = path_or(t, p, d.tool_key, base_dir, d.tool);
    let url = match t.get::<String>(p, "url") {
        Some(s) => parse_http_url(p, &t.path("url"), s, d.url),
        None => None,
    }
    .unwrap_or_else(|| Url::parse(d.url).expect("valid default"));
    let pid_file = t.get::<String>(p, "pid_file");
    let process_name = t.get::<String>(p, "process_name");
    let reload_key = t.get::<String>(p, "reload");
    let reload_word = reload_key.as_ref().map_or(d.reload, |s| s.value.as_str());
    let reload = match reload_key.as_ref() {
        _ if reload_word == "http" => ReloadMethod::Http,
        Some(s) if reload_word != "signal" => {
            p.at(
                s.span.clone(),
                &t.path("reload"),
                format!("`{}` is not one of: signal, http", s.value),
            );
            ReloadMethod::Http
        }
        _ => match (pid_file, process_name) {
            (Some(pid), Some(name)) => {
                p.at(
                    name.span,
                    &t.path("process_name"),
                    "set either pid_file or process_name, not both",
                );
                ReloadMethod::Signal(ProcessRef::PidFile(
                    normalize(&base_dir.join(pid.value)),
                    d.program_names,
                ))
            }
            (Some(pid), None) => ReloadMethod::Signal(ProcessRef::PidFile(
                normalize(&base_dir.join(pid.value)),
                d.program_names,
            )),
            (None, name) => ReloadMethod::Signal(ProcessRef::Name(
                name.map_or_else(|| d.process_name.to_string(), |n| n.value),
            )),
        },
    };
    let user = match t.get::<String>(p, "user") {
        Some(s) => Identity::lookup(&s.value)
            .map_err(|_| {
                p.at(
                    s.span,
                    &t.path("user"),
                    format!("no such user `{}` on this machine", s.value),
                )
            })
            .ok(),
        None => Identity::lookup("prometheus")
            .map_err(|_| p.missing_in(t.span(), &t.path("user"), "the default user `prometheus` does not exist here: set `user` to the user this program runs as"))
            .ok(),
    };
    let check_timeout =
        duration(t, p, "check_timeout").map_or(Duration::from_secs(30), |d| d.as_duration());
    let verify_timeout =
        duration(t, p, "verify_timeout").map_or(Duration::from_secs(30), |d| d.as_duration());
    Some(ServiceSettings {
        config_file,
        base_file,
        check_tool,
        url,
        reload,
        user: user?,
        check_timeout,
        verify_timeout,
    })
}

/// `[prometheus] token_files`: auto, reread or new_file.
fn read_token_files(t: &mut Fields, p: &mut Problems) -> TokenFiles {
    let Some(s) = t.get::<String>(p, "token_files") else {
        return TokenFiles::Auto;
    };
    match s.value.as_str() {
        "auto" => TokenFiles::Auto,
        "reread" => TokenFiles::Reread,
        "new_file" => TokenFiles::NewFile,
        other => {
            p.at(
                s.span,
                &t.path("token_files"),
                format!("`{other}` is not one of: auto, reread, new_file"),
            );
            TokenFiles::Auto
        }
    }
}

/// `[defaults]`, checked as a cluster file holding only them would be:
/// what is wrong there is promfed.toml's problem, whichever cluster
/// inherits it, so a broken default is handled as any broken setting (the
/// daemon keeps the settings in force). What only clashes with one
/// cluster's file is that cluster's problem, found when it is read.
fn read_defaults(
    source: &SourceText,
    doc: &toml_edit::Document<String>,
    p: &mut Problems,
) -> Defaults {
    let before = p.len();
    let defaults = Defaults::read(source, doc, p);
    if defaults.is_empty() || p.len() > before {
        return defaults;
    }
    let probe = SourceText::new(source.path.with_file_name("[defaults]"), "");
    if let Err(broken) = Cluster::parse_with(&probe, "defaults", &defaults.alone()) {
        // The probe's own problems (no api_server, no credentials) are not
        // the defaults'.
        for d in broken
            .problems
            .into_iter()
            .filter(|d| d.file == source.path)
        {
            p.take(d);
        }
    }
    defaults
}

/// With replicas, no cluster may have the replica label (see
/// `Inventory::assign`): a default that gives it to every cluster is
/// refused here, once, rather than in every cluster.
fn replica_label_not_inherited(
    doc: &toml_edit::Document<String>,
    shard: &super::shard::ShardSettings,
    p: &mut Problems,
) {
    let label = shard.replica_label.as_str();
    let key = doc
        .get("defaults")
        .and_then(|d| d.get("labels"))
        .and_then(|l| l.as_table_like())
        .and_then(|l| l.get_key_value(label))
        .and_then(|(k, _)| k.span());
    if let (Some(span), true) = (key, shard.replication >= 2) {
        p.at(
            span,
            &format!("defaults.labels.{label}"),
            format!("`{label}` is [shard]'s replica_label: with replication = {}, it tells which host sent a sample, and a cluster label of that name would hide it", shard.replication),
        );
    }
}

/// Removes `.` and `..` lexically, so generated paths read cleanly.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn path_or(
    t: &mut Fields,
    p: &mut Problems,
    key: &'static str,
    base_dir: &Path,
    default: &str,
) -> PathBuf {
    match t.get::<String>(p, key) {
        Some(s) if s.value.is_empty() => {
            p.at(s.span, &t.path(key), "must not be empty");
            PathBuf::from(default)
        }
        Some(s) => normalize(&base_dir.join(s.value)),
        None => PathBuf::from(default),
    }
}

fn duration(t: &mut Fields, p: &mut Problems, key: &'static str) -> Option<PromDuration> {
    let s = t.get::<String>(p, key)?;
    PromDuration::parse(&s.value)
        .map_err(|e| p.at(s.span, &t.path(key), e))
        .ok()
}

/// `[prometheus] url` or `[alertmanager] url`: http or https, with a host.
/// `default` is the program's own address, which the hint offers.
fn parse_http_url(p: &mut Problems, key: &str, s: Spanned<String>, default: &str) -> Option<Url> {
    let hint = format!(
        "promfed sends no credentials to this API: give an address that needs none, such as the loopback one ({default})"
    );
    let u = super::values::url(p, key, &s, &hint)?;
    if matches!(u.scheme(), "http" | "https") && u.host().is_some() {
        return Some(u);
    }
    p.at(
        s.span,
        key,
        format!(
            "{} is not an http:// or https:// URL",
            super::values::shown_url(&s.value)
        ),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, Vec<String>> {
        Settings::parse(&SourceText::new("/etc/promfed/promfed.toml", text))
            .map_err(|ds| ds.iter().map(|d| d.headline()).collect())
    }

    #[test]
    fn relative_paths_resolve_against_the_settings_folder() {
        let s = parse("state_dir = \"state\"\n[prometheus]\nuser = \"root\"\nreload = \"http\"\n")
            .unwrap();
        assert_eq!(s.state_dir, Path::new("/etc/promfed/state"));
        assert_eq!(s.clusters_dir, Path::new("/etc/promfed.d"));
        assert_eq!(s.prometheus.reload, ReloadMethod::Http);
        assert_eq!(s.scrape_interval.as_str(), "30s");
    }

    #[test]
    fn reports_all_problems_at_once() {
        let errors = parse(
            "scrape_interval = \"30\"\nwat = 1\n[prometheus]\nuser = \"root\"\nurl = \"ftp://x\"\nreload = \"kill\"\n",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "/etc/promfed/promfed.toml:1:19: key `scrape_interval`: `30` is not a duration (examples: 30s, 1m30s, 500ms, 2h)",
                "/etc/promfed/promfed.toml:2:1: key `wat`: unknown key (allowed here: alertmanager, clusters_dir, debounce, defaults, discovery, max_delay, max_targets, metrics_file, prometheus, resync_interval, scrape_interval, scrape_timeout, shard, state_dir)",
                "/etc/promfed/promfed.toml:5:7: key `prometheus.url`: `ftp://x` is not an http:// or https:// URL",
                "/etc/promfed/promfed.toml:6:10: key `prometheus.reload`: `kill` is not one of: signal, http",
            ]
        );
    }

    #[test]
    fn token_files_is_one_of_three_words_and_only_prometheus_has_it() {
        let with = |extra: &str| {
            parse(&format!(
                "[prometheus]\nuser = \"root\"\n{extra}[alertmanager]\nuser = \"root\"\n"
            ))
        };
        assert_eq!(with("").unwrap().token_files, TokenFiles::Auto);
        let s = with("token_files = \"new_file\"\n").unwrap();
        assert!(s.new_file_per_token());
        let s = with("token_files = \"reread\"\n").unwrap();
        assert!(!s.new_file_per_token());
        assert_eq!(
            with("token_files = \"copy\"\n").unwrap_err(),
            [
                "/etc/promfed/promfed.toml:3:15: key `prometheus.token_files`: `copy` is not one of: auto, reread, new_file"
            ]
        );
        let e = parse("[prometheus]\nuser = \"root\"\n[alertmanager]\nuser = \"root\"\ntoken_files = \"reread\"\n")
            .unwrap_err();
        assert!(
            e[0].contains("5:1: key `alertmanager.token_files`: unknown key"),
            "{e:?}"
        );
    }

    #[test]
    fn a_password_in_a_program_url_is_refused_and_never_repeated() {
        let errors = parse(
            "[prometheus]\nuser = \"root\"\nurl = \"http://admin:SECRET@127.0.0.1:9090\"\n[alertmanager]\nuser = \"root\"\nurl = \"http://:SECRET@127.0.0.1:9093\"\n",
        )
        .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        for (e, at) in errors
            .iter()
            .zip(["3:7: key `prometheus.url`", "6:7: key `alertmanager.url`"])
        {
            assert!(
                e.contains(at)
                    && e.contains("holds a user name or password")
                    && !e.contains("SECRET")
                    && !e.contains("admin"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_shard_key_of_the_wrong_type_is_not_also_missing() {
        let errors = parse("[shard]\nmembers = \"mon-a,mon-b\"\nself = 2\n").unwrap_err();
        assert_eq!(
            errors,
            [
                "/etc/promfed/promfed.toml:2:11: key `shard.members`: expected a list of strings",
                "/etc/promfed/promfed.toml:3:8: key `shard.self`: expected a string",
            ]
        );
    }
}
