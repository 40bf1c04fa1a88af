//! Test support: real Prometheus, promtool and node-exporter from Debian's
//! packages, the fake API server, and a promfed runner. A missing tool is a
//! test failure, never a skip.

use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A real CA certificate, a client certificate it signed and that one's key,
/// and an unrelated key: for files that only have to be what Prometheus
/// accepts (tests/fixtures/tls/README).
pub const TEST_CA: &str = include_str!("../fixtures/tls/ca.crt");
pub const TEST_CLIENT_CERT: &str = include_str!("../fixtures/tls/client.crt");
pub const TEST_CLIENT_KEY: &str = include_str!("../fixtures/tls/client.key");
pub const TEST_OTHER_KEY: &str = include_str!("../fixtures/tls/other.key");

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";
pub const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
pub const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
pub const AMTOOL: &str = "/usr/bin/amtool";
/// Debian 13's Prometheus 2.53 and its promtool, which have Kubernetes
/// discovery; fetched into a private folder by scripts/trixie-prometheus.
pub const TRIXIE_PROMETHEUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/target/trixie/root/usr/bin/prometheus"
);
pub const TRIXIE_PROMTOOL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/target/trixie/root/usr/bin/promtool"
);
/// Debian sid's Prometheus 3.5 LTS, its promtool, Alertmanager 0.33 and its
/// amtool; fetched into a private folder by scripts/sid-prometheus.
pub const SID_PROMETHEUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/target/sid/root/usr/bin/prometheus"
);
pub const SID_PROMTOOL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/target/sid/root/usr/bin/promtool"
);
pub const SID_ALERTMANAGER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/target/sid/root/usr/bin/prometheus-alertmanager"
);
pub const SID_AMTOOL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/target/sid/root/usr/bin/amtool"
);

/// Fails the test, loudly, when a required tool is not installed.
pub fn require(tool: &str) {
    assert!(
        Path::new(tool).exists(),
        "{tool} is missing: run scripts/test, which installs Debian's prometheus packages"
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 200 ms until it returns Some, or fails after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A child process killed when the test ends, pass or fail.
pub struct Process {
    pub child: Child,
}

impl Process {
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Process {
        let log = std::fs::File::create(log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http_get(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn http_json(url: &str) -> Option<Value> {
    serde_json::from_str(&http_get(url)?).ok()
}

pub struct NodeExporter {
    pub port: u16,
    _process: Process,
}

impl NodeExporter {
    pub fn start(dir: &Path) -> NodeExporter {
        require(NODE_EXPORTER);
        let port = free_port();
        let process = Process::spawn(
            "node-exporter",
            Command::new(NODE_EXPORTER).args([
                &format!("--web.listen-address=127.0.0.1:{port}"),
                "--no-collector.systemd",
            ]),
            &dir.join("node-exporter.log"),
        );
        wait_for("node-exporter", Duration::from_secs(10), || {
            http_get(&format!("http://127.0.0.1:{port}/metrics"))
        });
        NodeExporter {
            port,
            _process: process,
        }
    }
}

/// node-exporter serving only the series of a text file: a small exporter
/// of whatever shape a test needs (Istio's, for example).
pub struct TextExporter {
    pub port: u16,
    _process: Process,
}

impl TextExporter {
    pub fn start(dir: &Path, name: &str, series: &str) -> TextExporter {
        Self::start_at(dir, name, series, "/metrics")
    }

    /// The same, serving at `path` (Istio's sidecars: `/stats/prometheus`).
    pub fn start_at(dir: &Path, name: &str, series: &str, path: &str) -> TextExporter {
        require(NODE_EXPORTER);
        let text_dir = dir.join(format!("{name}-textfiles"));
        std::fs::create_dir_all(&text_dir).unwrap();
        std::fs::write(text_dir.join("series.prom"), series).unwrap();
        let port = free_port();
        let process = Process::spawn(
            name,
            Command::new(NODE_EXPORTER).args([
                &format!("--web.listen-address=127.0.0.1:{port}"),
                "--collector.disable-defaults",
                "--collector.textfile",
                &format!("--collector.textfile.directory={}", text_dir.display()),
                &format!("--web.telemetry-path={path}"),
            ]),
            &dir.join(format!("{name}.log")),
        );
        wait_for(name, Duration::from_secs(10), || {
            http_get(&format!("http://127.0.0.1:{port}{path}"))
        });
        TextExporter {
            port,
            _process: process,
        }
    }
}

/// The fake API server of one cluster, with its own CA and state file.
pub struct FakeCluster {
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    pub token: String,
    process: Option<Process>,
}

/// A CA with a server certificate for 127.0.0.1 and a client certificate,
/// made by the fake's own PKI maker, in `dir`.
pub fn make_pki(dir: &Path) -> PathBuf {
    let status = Command::new("python3")
        .arg(fake_script())
        .arg("pki")
        .arg(dir)
        .status()
        .expect("python3 runs the fake's PKI maker");
    assert!(status.success(), "the PKI could not be made");
    dir.to_path_buf()
}

pub fn fake_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_apiserver.py")
}

impl FakeCluster {
    /// Starts a fake cluster with `nodes`, one ready node-exporter pod per
    /// node forwarding to `exporter`, and a token that may do everything.
    pub fn start(root: &Path, name: &str, nodes: &[&str], exporter: &NodeExporter) -> FakeCluster {
        Self::start_with_env(root, name, nodes, exporter, &[])
    }

    /// The same, with extra environment for the fake (its test knobs).
    pub fn start_with_env(
        root: &Path,
        name: &str,
        nodes: &[&str],
        exporter: &NodeExporter,
        env: &[(&str, &str)],
    ) -> FakeCluster {
        let dir = root.join(format!("fake-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("python3")
            .arg(fake_script())
            .args(["pki"])
            .arg(dir.join("pki"))
            .status()
            .expect("python3 runs the fake API server");
        assert!(
            status.success(),
            "the fake's PKI could not be made (is openssl installed?)"
        );
        let token = format!("token-{name}-1");
        let mut fake = FakeCluster {
            name: name.into(),
            dir,
            port: 0,
            token,
            process: None,
        };
        fake.set_state(fake.state(nodes, exporter.port));
        fake.launch(0, env);
        fake
    }

    pub fn state(&self, nodes: &[&str], exporter_port: u16) -> Value {
        json!({
            "tokens": { &self.token: { "user": "system:serviceaccount:monitoring:prometheus" } },
            "client_users": { "promfed-client": {} },
            "nodes": nodes,
            "node_exporter": {
                "namespace": "monitoring",
                "service": "prometheus-node-exporter",
                "port": 9100,
                "port_name": "http-metrics",
                "upstream": format!("127.0.0.1:{exporter_port}"),
                "pods": nodes.iter().map(|n| json!({"name": format!("node-exporter-{n}"), "node": n})).collect::<Vec<_>>(),
            },
        })
    }

    /// Replaces the fake's state atomically; it is re-read on the next request.
    pub fn set_state(&self, state: Value) {
        let tmp = self.dir.join("state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
        std::fs::rename(&tmp, self.dir.join("state.json")).unwrap();
    }

    pub fn current_state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("state.json")).unwrap()).unwrap()
    }

    fn launch(&mut self, port: u16, env: &[(&str, &str)]) {
        let port_file = self.dir.join("port");
        let _ = std::fs::remove_file(&port_file);
        let process = Process::spawn(
            "fake-apiserver",
            Command::new("python3")
                .arg(fake_script())
                .arg("serve")
                .arg("--pki")
                .arg(self.dir.join("pki"))
                .arg("--state")
                .arg(self.dir.join("state.json"))
                .arg("--port-file")
                .arg(&port_file)
                .arg("--port")
                .arg(port.to_string())
                .envs(env.iter().copied()),
            &self.dir.join("fake.log"),
        );
        self.port = wait_for("the fake API server", Duration::from_secs(10), || {
            std::fs::read_to_string(&port_file)
                .ok()?
                .trim()
                .parse()
                .ok()
        });
        self.process = Some(process);
    }

    /// Stops the server: its port refuses connections.
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// How many requests of a kind (`list_nodes`, `watch_endpointslices`,
    /// …) the fake has answered.
    pub fn requests(&self, what: &str) -> u64 {
        self.request_counts()[what].as_u64().unwrap_or(0)
    }

    /// Every kind of request the fake has answered, with its count.
    pub fn request_counts(&self) -> Value {
        let out = Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(self.ca())
            .arg(format!("{}/_fake/requests", self.url()))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    pub fn pki(&self, file: &str) -> PathBuf {
        self.dir.join("pki").join(file)
    }
}

/// A real Prometheus on loopback, with the lifecycle API on.
pub struct Prometheus {
    pub port: u16,
    pub pid_file: PathBuf,
    _process: Process,
}

impl Prometheus {
    /// Starts Prometheus on `config` (which must exist). `as_user` runs it as
    /// another user (group nogroup), like Debian's service does.
    pub fn start(dir: &Path, config: &Path, as_user: Option<&str>) -> Prometheus {
        Self::launch(PROMETHEUS, dir, config, as_user, free_port())
    }

    /// Starts again on a known port, as after a restart.
    pub fn start_on(dir: &Path, config: &Path, port: u16) -> Prometheus {
        Self::launch(PROMETHEUS, dir, config, None, port)
    }

    /// Starts as Debian's package does by default: without the lifecycle
    /// API, so `POST /-/reload` answers 403.
    pub fn start_without_lifecycle(dir: &Path, config: &Path) -> Prometheus {
        Self::launch_with(PROMETHEUS, dir, config, None, free_port(), &[])
    }

    /// Starts a Prometheus that only receives samples
    /// (`--web.enable-remote-write-receiver`), in a folder of its own.
    pub fn start_receiver(dir: &Path) -> Prometheus {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("receiver.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 15s\n").unwrap();
        Self::launch_with(
            PROMETHEUS,
            dir,
            &config,
            None,
            free_port(),
            &["--web.enable-remote-write-receiver"],
        )
    }

    /// Starts Debian 13's Prometheus 2.53, which has Kubernetes discovery.
    pub fn start_trixie(dir: &Path, config: &Path) -> Prometheus {
        Self::launch(TRIXIE_PROMETHEUS, dir, config, None, free_port())
    }

    /// Starts Debian sid's Prometheus 3.5 LTS (`as_user` as in `start`).
    pub fn start_sid(dir: &Path, config: &Path, as_user: Option<&str>) -> Prometheus {
        Self::launch(SID_PROMETHEUS, dir, config, as_user, free_port())
    }

    /// Starts Prometheus serving HTTPS that requires a client certificate
    /// signed by `pki`'s CA (`--web.config.file`), as an in-cluster
    /// Prometheus exposed with mutual TLS is.
    pub fn start_mutual_tls(dir: &Path, config: &Path, pki: &Path) -> Prometheus {
        require(PROMETHEUS);
        let port = free_port();
        let web = dir.join("web.yml");
        std::fs::write(
            &web,
            format!(
                "tls_server_config:\n  cert_file: {0}/server.crt\n  key_file: {0}/server.key\n  client_ca_file: {0}/ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n",
                pki.display()
            ),
        )
        .unwrap();
        let data = dir.join("prometheus-data");
        std::fs::create_dir_all(&data).unwrap();
        let process = Process::spawn(
            "prometheus-mtls",
            Command::new(PROMETHEUS)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg(format!("--web.config.file={}", web.display())),
            &dir.join("prometheus.log"),
        );
        wait_for(
            "Prometheus with mutual TLS",
            Duration::from_secs(20),
            || {
                let ok = Command::new("curl")
                    .args(["-sf", "--cacert"])
                    .arg(pki.join("ca.crt"))
                    .arg("--cert")
                    .arg(pki.join("client.crt"))
                    .arg("--key")
                    .arg(pki.join("client.key"))
                    .arg(format!("https://127.0.0.1:{port}/-/ready"))
                    .output()
                    .ok()?;
                ok.status.success().then_some(())
            },
        );
        let pid_file = dir.join("prometheus.pid");
        std::fs::write(&pid_file, process.pid().to_string()).unwrap();
        Prometheus {
            port,
            pid_file,
            _process: process,
        }
    }

    fn launch(
        binary: &str,
        dir: &Path,
        config: &Path,
        as_user: Option<&str>,
        port: u16,
    ) -> Prometheus {
        Self::launch_with(
            binary,
            dir,
            config,
            as_user,
            port,
            &["--web.enable-lifecycle"],
        )
    }

    fn launch_with(
        binary: &str,
        dir: &Path,
        config: &Path,
        as_user: Option<&str>,
        port: u16,
        flags: &[&str],
    ) -> Prometheus {
        require(binary);
        let data = dir.join("prometheus-data");
        std::fs::create_dir_all(&data).unwrap();
        let mut cmd = match as_user {
            Some(user) => {
                assert!(
                    Command::new("chown")
                        .arg("-R")
                        .arg(user)
                        .arg(&data)
                        .status()
                        .unwrap()
                        .success()
                );
                let mut c = Command::new("setpriv");
                c.args([
                    &format!("--reuid={user}"),
                    "--regid=nogroup",
                    "--clear-groups",
                    binary,
                ]);
                c
            }
            None => Command::new(binary),
        };
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags);
        let process = Process::spawn("prometheus", &mut cmd, &dir.join("prometheus.log"));
        let pid_file = dir.join("prometheus.pid");
        std::fs::write(&pid_file, process.pid().to_string()).unwrap();
        let p = Prometheus {
            port,
            pid_file,
            _process: process,
        };
        wait_for("Prometheus to be ready", Duration::from_secs(20), || {
            http_get(&format!("{}/-/ready", p.url()))
        });
        p
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn api(&self, path: &str) -> Value {
        http_json(&format!("{}{path}", self.url()))
            .unwrap_or_else(|| panic!("Prometheus answered nothing for {path}"))
    }

    pub fn active_targets(&self) -> Vec<Value> {
        self.api("/api/v1/targets?state=active")["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until every target of the pools under `prefix` is up and there
    /// are `count` of them; returns them.
    pub fn wait_targets_up(&self, prefix: &str, count: usize) -> Vec<Value> {
        wait_for(
            &format!("{count} targets under {prefix} to be up"),
            Duration::from_secs(40),
            || {
                let targets: Vec<Value> = self
                    .active_targets()
                    .into_iter()
                    .filter(|t| t["scrapePool"].as_str().unwrap_or("").starts_with(prefix))
                    .collect();
                (targets.len() == count && targets.iter().all(|t| t["health"] == "up"))
                    .then_some(targets)
            },
        )
    }

    pub fn query(&self, promql: &str) -> Vec<Value> {
        query_at(&self.url(), promql)
    }

    /// `prometheus_config_last_reload_success_timestamp_seconds`, to count reloads.
    pub fn last_reload(&self) -> String {
        self.api("/api/v1/status/runtimeinfo")["data"]["lastConfigTime"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// An instant query's result vector, from any server with Prometheus's
/// query API (Prometheus, VictoriaMetrics).
pub fn query_at(base: &str, promql: &str) -> Vec<Value> {
    let out = Command::new("curl")
        .args([
            "-sf",
            "-G",
            &format!("{base}/api/v1/query"),
            "--data-urlencode",
        ])
        .arg(format!("query={promql}"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

pub const VICTORIA_METRICS: &str = "/usr/bin/victoria-metrics";

/// Debian's single-node VictoriaMetrics on loopback, deduplicating samples
/// of one series closer than `dedup` (as a cluster's vmstorage does).
pub struct VictoriaMetrics {
    pub port: u16,
    _process: Process,
}

impl VictoriaMetrics {
    pub fn start(dir: &Path, dedup: &str) -> VictoriaMetrics {
        require(VICTORIA_METRICS);
        let port = free_port();
        let data = dir.join("victoria-metrics-data");
        std::fs::create_dir_all(&data).unwrap();
        let process = Process::spawn(
            "victoria-metrics",
            Command::new(VICTORIA_METRICS)
                .arg(format!("-storageDataPath={}", data.display()))
                .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                .arg(format!("-dedup.minScrapeInterval={dedup}"))
                .arg("-retentionPeriod=1d")
                // Answer with the newest samples: tests wait seconds, not minutes.
                .arg("-search.latencyOffset=1s")
                .arg("-search.disableCache"),
            &dir.join("victoria-metrics.log"),
        );
        let vm = VictoriaMetrics {
            port,
            _process: process,
        };
        wait_for(
            "VictoriaMetrics to be ready",
            Duration::from_secs(20),
            || http_get(&format!("{}/health", vm.url())),
        );
        vm
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn query(&self, promql: &str) -> Vec<Value> {
        query_at(&self.url(), promql)
    }
}

/// A promfed setup in a temporary folder: settings, base file, clusters.
pub struct Setup {
    pub root: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Setup {
        require(PROMTOOL);
        let root = tempfile::Builder::new()
            .prefix("promfed-test-")
            .tempdir()
            .unwrap();
        let s = Setup { root };
        for dir in ["etc/promfed.d", "prometheus", "state"] {
            std::fs::create_dir_all(s.path(dir)).unwrap();
        }
        s.write(
            "etc/prometheus.base.yml",
            "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
        );
        // As if promfed had written it before: marked, so it is promfed's.
        s.write(
            "prometheus/prometheus.yml",
            "# Generated by promfed (the test's first file)\nglobal:\n  scrape_interval: 15s\nscrape_configs: []\n",
        );
        s
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    /// Writes promfed.toml for a Prometheus at `url`; `reload` is the whole
    /// reload setting line(s).
    pub fn settings(&self, prometheus_url: &str, reload: &str) {
        self.write(
            "etc/promfed.toml",
            &format!(
                "clusters_dir = \"promfed.d\"\nstate_dir = \"../state\"\nscrape_interval = \"2s\"\nresync_interval = \"1s\"\ndebounce = \"100ms\"\nmax_delay = \"1s\"\nmetrics_file = \"../state/promfed.prom\"\n\n[prometheus]\nconfig_file = \"../prometheus/prometheus.yml\"\nbase_file = \"prometheus.base.yml\"\npromtool = \"{PROMTOOL}\"\nurl = \"{prometheus_url}\"\n{reload}\nuser = \"root\"\nverify_timeout = \"10s\"\n"
            ),
        );
    }

    /// Moves the safety-net relist far away: what changes then comes by
    /// watch.
    pub fn relist_rarely(&self) {
        let settings = self
            .read("etc/promfed.toml")
            .replace("resync_interval = \"1s\"", "resync_interval = \"10m\"");
        self.write("etc/promfed.toml", &settings);
    }

    /// Settings for Debian 13's Prometheus at `url`, with promfed writing
    /// Prometheus's own Kubernetes discovery.
    pub fn kubernetes_sd_settings(&self, prometheus_url: &str) {
        self.settings(prometheus_url, "reload = \"http\"");
        let settings = self
            .read("etc/promfed.toml")
            .replace(PROMTOOL, TRIXIE_PROMTOOL)
            .replacen("\n", "\ndiscovery = \"kubernetes_sd\"\n", 1);
        self.write("etc/promfed.toml", &settings);
    }

    /// `kubernetes_sd_settings`, gated by sid's promtool 3.5.
    pub fn sid_kubernetes_sd_settings(&self, prometheus_url: &str) {
        self.kubernetes_sd_settings(prometheus_url);
        let settings = self
            .read("etc/promfed.toml")
            .replace(TRIXIE_PROMTOOL, SID_PROMTOOL);
        self.write("etc/promfed.toml", &settings);
    }

    /// Appends `text` to the file at `rel`.
    pub fn append(&self, rel: &str, text: &str) {
        let mut all = self.read(rel);
        all.push_str(text);
        self.write(rel, &all);
    }

    /// Adds a cluster file (and its token and CA) for `fake`.
    pub fn add_cluster(&self, fake: &FakeCluster) {
        let name = &fake.name;
        self.write(
            &format!("etc/promfed.d/{name}/token"),
            &format!("{}\n", fake.token),
        );
        std::fs::copy(
            fake.ca(),
            self.path(&format!("etc/promfed.d/{name}/ca.crt")),
        )
        .unwrap();
        self.write(
            &format!("etc/promfed.d/{name}.toml"),
            &format!(
                "api_server = \"{}\"\ntoken_file = \"{name}/token\"\nca_file = \"{name}/ca.crt\"\nlabels = {{ env = \"test\" }}\n",
                fake.url()
            ),
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            self.path(&format!("etc/promfed.d/{name}/token")),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }

    pub fn promfed(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_promfed"))
            .arg("--config")
            .arg(self.path("etc/promfed.toml"))
            .args(args)
            .output()
            .unwrap()
    }

    /// Starts `promfed run` with a notify socket of its own.
    pub fn daemon(&self) -> Daemon {
        self.daemon_with_env(&[])
    }

    /// Starts `promfed run` with extra environment, as systemd would set it.
    pub fn daemon_with_env(&self, env: &[(&str, &str)]) -> Daemon {
        self.daemon_as(None, env)
    }

    /// Starts `promfed run` as `user` (the tree must be theirs), or as root.
    pub fn daemon_as(&self, user: Option<&str>, env: &[(&str, &str)]) -> Daemon {
        let socket_path = self.path("notify.sock");
        let _ = std::fs::remove_file(&socket_path);
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        // Drained without waiting: a daemon that sends faster than any read
        // timeout (the watchdog) must not keep a drain going for ever.
        socket.set_nonblocking(true).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let mut command = match user {
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.args(["--reuid", user, "--regid", user, "--clear-groups"])
                    .arg(env!("CARGO_BIN_EXE_promfed"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_promfed")),
        };
        let process = Process::spawn(
            "promfed run",
            command
                .arg("--config")
                .arg(self.path("etc/promfed.toml"))
                .arg("run")
                .env("NOTIFY_SOCKET", &socket_path)
                .env("PROMFED_LOG", "promfed=debug,warn")
                .envs(env.iter().copied()),
            &self.path("promfed.log"),
        );
        Daemon {
            process,
            socket,
            messages: Vec::new(),
            log: self.path("promfed.log"),
            status: self.path("state/status.json"),
        }
    }

    pub fn prometheus(&self, as_user: Option<&str>) -> Prometheus {
        Prometheus::start(
            self.root.path(),
            &self.path("prometheus/prometheus.yml"),
            as_user,
        )
    }

    /// `release`'s Prometheus, and file_sd settings (`reload` as in
    /// `settings`) that name its own promtool.
    pub fn prometheus_of(&self, release: Release, reload: &str) -> Prometheus {
        let config = self.path("prometheus/prometheus.yml");
        let (prometheus, promtool) = match release {
            Release::Bookworm => (Prometheus::start(self.root.path(), &config, None), PROMTOOL),
            Release::Trixie => (
                Prometheus::start_trixie(self.root.path(), &config),
                TRIXIE_PROMTOOL,
            ),
            Release::Sid => (
                Prometheus::start_sid(self.root.path(), &config, None),
                SID_PROMTOOL,
            ),
        };
        self.settings(&prometheus.url(), reload);
        let settings = self.read("etc/promfed.toml").replace(PROMTOOL, promtool);
        self.write("etc/promfed.toml", &settings);
        prometheus
    }
}

/// The Prometheus releases tests run on: Debian 12's 2.42, Debian 13's
/// 2.53, Debian sid's 3.5 LTS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    Bookworm,
    Trixie,
    Sid,
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing both streams when it differs.
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        stdout(o),
        stderr(o)
    );
}

/// `promfed run` under test, with the sd_notify messages it sent.
pub struct Daemon {
    pub process: Process,
    socket: UnixDatagram,
    /// Every message received so far, in order.
    pub messages: Vec<String>,
    log: PathBuf,
    status: PathBuf,
}

impl Daemon {
    /// Reads every message queued so far into `messages`.
    pub fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.messages
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }

    /// Waits for a message that `matches`, among all received; returns it.
    /// Every message is kept in `messages`.
    pub fn wait_message(
        &mut self,
        what: &str,
        limit: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_message_since(0, what, limit, matches)
    }

    /// Waits for a message that `matches` among `messages[since..]`.
    pub fn wait_message_since(
        &mut self,
        since: usize,
        what: &str,
        limit: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        let mut seen = since;
        loop {
            self.drain();
            if let Some(m) = self.messages[seen..].iter().find(|m| matches(m)) {
                return m.clone();
            }
            seen = self.messages.len();
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}; messages: {:?}\n--- log\n{}",
                self.messages,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn status(&self) -> Value {
        serde_json::from_slice(&std::fs::read(&self.status).unwrap()).unwrap()
    }

    /// Waits until status.json satisfies `check`.
    pub fn wait_status(
        &mut self,
        what: &str,
        limit: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            // Keep reading notifications, as systemd does: a full socket
            // queue would block the daemon's sd_notify.
            self.drain();
            let status: Option<Value> = std::fs::read(&self.status)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(s) = status.as_ref().filter(|s| check(s)) {
                return s.clone();
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}; status: {}\n--- log\n{}",
                status.map(|s| s.to_string()).unwrap_or_default(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.process.pid().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

/// A real Alertmanager on loopback, without clustering.
pub struct Alertmanager {
    pub port: u16,
    _process: Process,
}

impl Alertmanager {
    pub fn start(dir: &Path, config: &Path) -> Alertmanager {
        Self::launch(ALERTMANAGER, dir, config)
    }

    /// Starts Debian sid's Alertmanager 0.33.
    pub fn start_sid(dir: &Path, config: &Path) -> Alertmanager {
        Self::launch(SID_ALERTMANAGER, dir, config)
    }

    fn launch(binary: &str, dir: &Path, config: &Path) -> Alertmanager {
        require(binary);
        let port = free_port();
        let process = Process::spawn(
            "alertmanager",
            Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.path={}",
                    dir.join("alertmanager-data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address="),
            &dir.join("alertmanager.log"),
        );
        let am = Alertmanager {
            port,
            _process: process,
        };
        wait_for("Alertmanager to be ready", Duration::from_secs(20), || {
            http_get(&format!("{}/-/ready", am.url()))
        });
        am
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The routes in force, as (matchers, receiver).
    pub fn routes(&self) -> Vec<(String, String)> {
        let status = http_json(&format!("{}/api/v2/status", self.url())).unwrap();
        let original = status["config"]["original"].as_str().unwrap().to_string();
        let mut routes = Vec::new();
        for line in original.lines() {
            if let Some(r) = line.trim().strip_prefix("- receiver: ") {
                routes.push((String::new(), r.to_string()));
            } else if let Some(m) = line.trim().strip_prefix("- cluster=") {
                if let Some(last) = routes.last_mut() {
                    last.0 = format!("cluster={m}");
                }
            }
        }
        routes
    }
}

/// A system user of the tests' own, created when missing.
pub fn test_user(name: &str) -> String {
    let exists = Command::new("id")
        .arg(name)
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        let made = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ])
            .output()
            .unwrap();
        // Another test may have made it meanwhile.
        assert!(
            made.status.success()
                || Command::new("id")
                    .arg(name)
                    .output()
                    .unwrap()
                    .status
                    .success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    name.to_string()
}

/// Takes every inotify instance `user` may have (fs.inotify.max_user_instances)
/// until dropped.
pub struct InotifyHog {
    process: Child,
}

impl InotifyHog {
    pub fn start(user: &str) -> InotifyHog {
        let mut process = Command::new("setpriv")
            .args([
                "--reuid",
                user,
                "--regid",
                user,
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
            ])
            .arg(
                "import ctypes, sys\n\
                 libc = ctypes.CDLL(None)\n\
                 fds = []\n\
                 while len(fds) < 100000:\n\
                 \x20   fd = libc.inotify_init()\n\
                 \x20   if fd < 0: break\n\
                 \x20   fds.append(fd)\n\
                 print(len(fds), flush=True)\n\
                 sys.stdin.read()\n",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(process.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.trim().parse::<u32>().unwrap_or(0) > 0,
            "the hog took no instance: {line:?}"
        );
        InotifyHog { process }
    }
}

impl Drop for InotifyHog {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A setup with a good cluster `stage` and a hostile cluster `evil`, and a
/// real Prometheus.
pub struct Scene {
    pub setup: Setup,
    pub evil: FakeCluster,
    _stage: FakeCluster,
    _exporter: NodeExporter,
    pub prometheus: Prometheus,
}

pub fn scene() -> Scene {
    let setup = Setup::new();
    let exporter = NodeExporter::start(setup.root.path());
    let stage = FakeCluster::start(setup.root.path(), "stage", &["s-1"], &exporter);
    let evil = FakeCluster::start(setup.root.path(), "evil", &["e-1"], &exporter);
    let prometheus = setup.prometheus(None);
    setup.settings(&prometheus.url(), "reload = \"http\"");
    setup.add_cluster(&stage);
    setup.add_cluster(&evil);
    Scene {
        setup,
        evil,
        _stage: stage,
        _exporter: exporter,
        prometheus,
    }
}

impl Scene {
    /// evil's token is in none of what the daemon shows or keeps:
    /// `promfed status`, its log, and every file of the state folder
    /// (status.json, targets, last good definitions, metrics).
    pub fn assert_token_nowhere(&self, daemon: &Daemon, case: &str) {
        let status = self.setup.promfed(&["status"]);
        let mut shown = vec![
            (
                "promfed status".to_string(),
                stdout(&status) + &stderr(&status),
            ),
            ("the log".to_string(), daemon.log()),
        ];
        shown.extend(files_below(&self.setup.path("state")));
        for (what, text) in shown {
            assert!(
                !text.contains(&self.evil.token),
                "{case}: the token leaked into {what}:\n{text}"
            );
        }
    }

    pub fn fault(&self, faults: serde_json::Value) {
        let mut state = self.evil.current_state();
        state["faults"] = faults;
        self.evil.set_state(state);
    }

    /// A byte-level fault of the fake (its state's `raw`): `case` answers
    /// the nodes list (`on` = "list") or the nodes watch ("watch").
    pub fn raw(&self, case: &str, on: &str) {
        let mut state = self.evil.current_state();
        state["raw"] = json!({"case": case, "on": on});
        self.evil.set_state(state);
    }

    /// `promfed apply`, killed and failed if it runs past `limit`.
    pub fn apply_within(&self, limit: Duration) -> Output {
        run_within(
            Command::new(env!("CARGO_BIN_EXE_promfed"))
                .arg("--config")
                .arg(self.setup.path("etc/promfed.toml"))
                .arg("apply"),
            limit,
        )
    }

    /// The good cluster was applied beside the hostile one.
    pub fn stage_applied(&self, out: &Output) {
        assert!(
            stdout(out).contains("cluster stage (")
                && stdout(out).contains("1 node, 1 node-exporter pod"),
            "{}",
            stdout(out)
        );
        assert!(
            stdout(out).contains("installed, reloaded and verified")
                || stdout(out).contains("is up to date, no reload needed"),
            "{}",
            stdout(out)
        );
        self.prometheus.wait_targets_up("promfed/stage/", 4);
    }
}

pub fn run_within(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}:\n{}{}",
                stdout(&out),
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Every regular file below `dir`, as (path, text), at most 1,000 files.
pub fn files_below(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten().take(1000) {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => folders.push(path),
                Ok(t) if t.is_file() => {
                    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default())
                        .into_owned();
                    found.push((path.display().to_string(), text));
                }
                _ => {}
            }
        }
    }
    found
}
