//! Shared helpers for the integration tests: real brokers on loopback (librdkafka's mock cluster
//! in its own process, and tansu with SQLite storage), `momentd run` as a child process, and
//! Kafka clients to feed and read topics.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub const INPUT: &str = "hr.interactions";
pub const OUTPUT: &str = "hr.triggers";
pub const DLQ: &str = "hr.interactions.dlq";

/// The integration tests start brokers and daemons; one at a time keeps them within the
/// machine's two cores.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Mock,
    Tansu,
}

pub struct Broker {
    pub kind: Kind,
    pub bootstrap: String,
    child: Child,
    /// The mock broker's command line (stdin) and its answers (stdout).
    commands: std::sync::Mutex<Option<(ChildStdin, BufReader<std::process::ChildStdout>)>>,
    /// The topics created, with their partition counts.
    topics: std::sync::Mutex<HashMap<String, i32>>,
    _dir: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cargo = Path::new(&home).join(".cargo/bin/tansu");
    if cargo.exists() {
        return cargo;
    }
    "tansu".into()
}

impl Broker {
    /// Starts a broker of `kind` with the topics (name, partitions) created.
    pub fn start(kind: Kind, topics: &[(&str, i32)]) -> Broker {
        match kind {
            Kind::Mock => Broker::mock(topics),
            Kind::Tansu => Broker::tansu(topics),
        }
    }

    fn mock(topics: &[(&str, i32)]) -> Broker {
        Broker::mock_cluster(1, topics)
    }

    /// The mock cluster with `brokers` brokers (so leaders and coordinators can move).
    pub fn mock_cluster(brokers: u32, topics: &[(&str, i32)]) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_momentd-mock-broker"))
            .args(["--brokers".to_string(), brokers.to_string()])
            .args(topics.iter().map(|(t, p)| format!("{t}:{p}")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the mock broker starts");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        let bootstrap = line
            .trim()
            .strip_prefix("bootstrap=")
            .unwrap_or_else(|| panic!("mock broker said {line:?}"))
            .to_string();
        let stdin = child.stdin.take().unwrap();
        Broker {
            kind: Kind::Mock,
            bootstrap,
            child,
            commands: std::sync::Mutex::new(Some((stdin, out))),
            topics: std::sync::Mutex::new(
                topics.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
            ),
            _dir: dir,
        }
    }

    fn tansu(topics: &[(&str, i32)]) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let bootstrap = format!("127.0.0.1:{port}");
        let child = spawn_tansu(dir.path(), &bootstrap);
        // Without this index every fetch scans all record headers (docs/development.md, "The test brokers").
        let db = dir.path().join("tansu.db");
        let ok = Command::new("python3")
            .args([
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
                 c.execute('create index if not exists header_topition_offset on header (topition, offset_id)'); c.commit()",
                db.to_str().unwrap(),
            ])
            .status()
            .expect("python3 runs");
        assert!(ok.success(), "creating tansu's header index");
        let b = Broker {
            kind: Kind::Tansu,
            bootstrap,
            child,
            commands: std::sync::Mutex::new(None),
            topics: std::sync::Mutex::new(HashMap::new()),
            _dir: dir,
        };
        b.create_topics(topics);
        b
    }

    /// Kills tansu (kill -9) and starts it again on the same database and port, `down` later.
    pub fn restart_tansu(&mut self, down: Duration) {
        assert_eq!(self.kind, Kind::Tansu, "only tansu restarts");
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = spawn_tansu(self._dir.path(), &self.bootstrap);
    }
}

/// Starts tansu with SQLite storage in `dir`, listening on `bootstrap`; returns once it listens.
fn spawn_tansu(dir: &Path, bootstrap: &str) -> Child {
    let url = format!("tcp://{bootstrap}");
    let child = Command::new(tansu_bin())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "sqlite://tansu.db",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("tansu.log"))
                .unwrap(),
        ))
        .spawn()
        .expect("tansu starts (scripts/setup.sh installs it; TANSU_BIN points elsewhere)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(bootstrap).is_err() {
        assert!(
            Instant::now() < deadline,
            "tansu did not listen on {bootstrap}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

impl Broker {
    /// A line to the mock broker's command interface; its answer.
    pub fn command(&self, line: &str) -> String {
        let mut g = self.commands.lock().unwrap();
        let (stdin, out) = g.as_mut().expect("only the mock broker takes commands");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let mut answer = String::new();
        out.read_line(&mut answer).unwrap();
        answer.trim().to_string()
    }

    /// Creates a topic (if this broker does not have it yet).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        if self.topics.lock().unwrap().contains_key(topic) {
            return;
        }
        match self.kind {
            Kind::Mock => {
                let a = self.command(&format!("create {topic} {partitions}"));
                assert_eq!(a, "ok", "creating {topic}");
                self.topics
                    .lock()
                    .unwrap()
                    .insert(topic.to_string(), partitions);
            }
            Kind::Tansu => self.create_topics(&[(topic, partitions)]),
        }
    }

    /// The partition count of a topic created here.
    pub fn partitions(&self, topic: &str) -> Option<i32> {
        self.topics.lock().unwrap().get(topic).copied()
    }

    fn create_topics(&self, topics: &[(&str, i32)]) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap();
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let res = rt
            .block_on(admin.create_topics(&new, &AdminOptions::new()))
            .expect("create topics");
        for r in res {
            r.expect("topic created");
        }
        let mut known = self.topics.lock().unwrap();
        for (t, p) in topics {
            known.insert(t.to_string(), *p);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `momentd run` as a child process, its stderr in a file, its HTTP port known.
pub struct Daemon {
    child: Child,
    pub http: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `momentd run` against `broker` in consumer group `group`, with `env` on top of
    /// the test defaults (no lateness: the test streams are in order). The group's changelog
    /// and repartition topics are created first, co-partitioned with the input, and its
    /// population topic of one partition (the mock cluster cannot create topics for the
    /// daemon).
    pub fn start(broker: &Broker, group: &str, env: &[(&str, &str)]) -> Daemon {
        let partitions = broker.partitions(INPUT).unwrap_or(1);
        let changelog = env
            .iter()
            .find(|(k, _)| *k == "MOMENTD__STATE__CHANGELOG_TOPIC")
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| format!("{group}-state-changelog"));
        broker.create_topic(&changelog, partitions);
        let repartition = env
            .iter()
            .find(|(k, _)| *k == "MOMENTD__STATE__REPARTITION_TOPIC")
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| format!("{group}-groups-repartition"));
        broker.create_topic(&repartition, partitions);
        let population = env
            .iter()
            .find(|(k, _)| *k == "MOMENTD__STATE__POPULATION_TOPIC")
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| format!("{group}-population"));
        broker.create_topic(&population, 1);
        Daemon::start_on(&broker.bootstrap, group, env)
    }

    /// [`Daemon::start`] without creating any topic.
    pub fn start_on(bootstrap: &str, group: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("momentd.log");
        let http = format!("127.0.0.1:{}", free_port());
        let mut c = Command::new(env!("CARGO_BIN_EXE_momentd"));
        c.args(["run", "--config", "config/momentd.toml"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("MOMENTD_PSEUDONYM_KEY")
            .env("MOMENTD__KAFKA__BROKERS", bootstrap)
            .env("MOMENTD__KAFKA__GROUP_ID", group)
            .env("MOMENTD__KAFKA__TOPIC_PARTITIONS", "1")
            .env("MOMENTD__HTTP__LISTEN", &http)
            .env("MOMENTD__TIME__ALLOWED_LATENESS", "0s")
            .env("MOMENTD__KAFKA__CLIENT__SESSION_TIMEOUT_MS", "10000")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().expect("momentd starts");
        Daemon {
            child,
            http,
            log,
            _dir: dir,
        }
    }

    /// `GET path`: (status, body), or None while nothing listens.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(&self.http).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.split(' ').nth(1)?.parse().ok()?;
        let body = buf.split_once("\r\n\r\n").map(|x| x.1.to_string())?;
        Some((status, body))
    }

    /// Waits until `/healthz` answers; returns the first `/readyz` status seen right after.
    pub fn wait_live(&self, timeout: Duration) -> u16 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((200, _)) = self.get("/healthz") {
                return self.get("/readyz").map(|r| r.0).unwrap_or(0);
            }
            assert!(
                Instant::now() < deadline,
                "momentd never answered /healthz: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.get("/readyz").map(|r| r.0) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "momentd never became ready: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The sum of every sample of `name` whose labels contain each of `labels`.
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let Some((200, body)) = self.get("/metrics") else {
            return 0.0;
        };
        parse_metric(&body, name, labels)
    }

    /// Whether the daemon's whole log has `needle` (ANSI colours removed).
    pub fn logged(&self, needle: &str) -> bool {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut plain = String::with_capacity(s.len());
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // Skip the escape sequence up to its final letter.
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        plain.contains(needle)
    }

    /// The exposition's lines of the metric `name` (for failure messages).
    pub fn metrics_matching(&self, name: &str) -> String {
        let Some((200, body)) = self.get("/metrics") else {
            return String::new();
        };
        body.lines()
            .filter(|l| l.starts_with(name))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until `metric(name, labels) >= at_least`.
    pub fn wait_metric(&self, name: &str, labels: &[&str], at_least: f64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.metric(name, labels) < at_least {
            assert!(
                Instant::now() < deadline,
                "{name}{labels:?} stayed below {at_least} (at {}): {}",
                self.metric(name, labels),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit; None if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = s.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn parse_metric(body: &str, name: &str, labels: &[&str]) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, r)) => (n, r),
                None => (series, ""),
            };
            (n == name && labels.iter().all(|lab| rest.contains(lab)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Rec {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: HashMap<String, String>,
}

impl Rec {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.value).expect("a JSON record")
    }
}

/// An input record to produce: key, value, headers.
pub type Input = (Option<Vec<u8>>, Vec<u8>, Vec<(&'static str, Vec<u8>)>);

/// Produces the records to `topic` (partitioned by key) and waits for every acknowledgement.
pub fn produce(bootstrap: &str, topic: &str, records: &[Input]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("message.max.bytes", "10000000")
        // (Fault tests take brokers down while chunks are produced: reconnect soon after.)
        .set("reconnect.backoff.max.ms", "1000")
        .create()
        .unwrap();
    for (key, value, headers) in records {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            });
        }
        let mut r: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).payload(value.as_slice()).headers(h);
        if let Some(k) = key {
            r = r.key(k.as_slice());
        }
        let mut r = Some(r);
        while let Some(rec) = r.take() {
            if let Err((_, back)) = p.send(rec) {
                r = Some(back);
                p.poll(Duration::from_millis(10));
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(120)).expect("produced");
}

/// JSON lines as input records keyed by their employee_id.
pub fn json_inputs(lines: &[String]) -> Vec<Input> {
    lines
        .iter()
        .map(|l| {
            let key = serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["employee_id"].as_str().map(|s| s.as_bytes().to_vec()));
            (key, l.as_bytes().to_vec(), vec![])
        })
        .collect()
}

/// Reads every partition of `topic` from the beginning until `n` records arrived or nothing new
/// came for `quiet` (then returns what there is).
pub fn read(bootstrap: &str, topic: &str, n: usize, quiet: Duration) -> Vec<Rec> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "momentd-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut last = Instant::now();
    while out.len() < n && last.elapsed() < quiet {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Rec {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
                last = Instant::now();
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// The group's committed offsets on `topic`, by partition (absent: nothing committed).
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> HashMap<i32, i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// `momentd replay` over `lines` (no lateness, like the daemons here): its triggers.
pub fn replay(lines: &[String]) -> Vec<serde_json::Value> {
    replay_with(lines, &[])
}

/// [`replay`] with `env` on top (configuration by `MOMENTD__…` variables).
pub fn replay_with(lines: &[String], env: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_momentd"))
        .args(["replay", "--config", "config/momentd.toml", "--input"])
        .arg(&input)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("MOMENTD_PSEUDONYM_KEY")
        .env("MOMENTD__TIME__ALLOWED_LATENESS", "0s")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The independent client: Python confluent-kafka (tests/support/kafka_client.py).
pub fn python_client(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/kafka_client.py"
        ))
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "kafka_client.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `n` employees, each with one `learning.module_abandoned` just before the assessment: every
/// input causes exactly one trigger (about its own employee), whatever the state before it.
pub fn one_trigger_each(n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            serde_json::json!({
                "event_id": format!("{tag}-ev-{i}"),
                "employee_id": format!("{tag}-emp-{i}"),
                "occurred_at": momentd::time::format_rfc3339(
                    momentd::time::parse_rfc3339("2026-03-01T00:00:00Z").unwrap() + i as i64 * 1000
                ),
                "type": "learning.module_abandoned",
                "attrs": {"module_id": "m-1", "progress_pct": 80, "before_assessment": true}
            })
            .to_string()
        })
        .collect()
}

/// Triggers by id; a trigger published twice must be the same trigger (at-least-once).
pub fn by_id(triggers: &[serde_json::Value]) -> BTreeMap<String, serde_json::Value> {
    let mut m = BTreeMap::new();
    for t in triggers {
        let id = t["trigger_id"].as_str().expect("trigger_id").to_string();
        if let Some(prev) = m.insert(id.clone(), t.clone()) {
            assert_eq!(prev, *t, "trigger {id} redelivered with different content");
        }
    }
    m
}

/// `momentd simulate`'s JSON lines for a workforce in which every ordinary team has a pattern.
pub fn simulated(employees: u32, days: u32, seed: u64) -> Vec<String> {
    simulated_with(&momentd::sim::SimOptions {
        employees,
        days,
        seed,
        pattern_share: 1.0,
        ..Default::default()
    })
}

/// The JSON lines of a simulation with these options.
pub fn simulated_with(opts: &momentd::sim::SimOptions) -> Vec<String> {
    let sim = momentd::sim::simulate(opts);
    String::from_utf8(momentd::sim::to_json_lines(&sim.records))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The `occurred_at` of a JSON line, if it is an event.
pub fn line_time(l: &str) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(l)
        .ok()
        .and_then(|v| {
            v["occurred_at"]
                .as_str()
                .and_then(momentd::time::parse_rfc3339)
        })
}

/// [`simulated`] in event-time order (each partition is then in order too, as a live feed
/// is), without its malformed lines (the dead-letter tests' business).
pub fn in_time_order(employees: u32, days: u32, seed: u64) -> Vec<String> {
    time_ordered(simulated(employees, days, seed))
}

/// The events of `lines` (malformed records left out), sorted by event time.
pub fn time_ordered(lines: Vec<String>) -> Vec<String> {
    let mut lines: Vec<String> = lines
        .into_iter()
        .filter(|l| line_time(l).is_some())
        .collect();
    lines.sort_by_key(|l| line_time(l));
    lines
}

/// Asserts two sets of triggers (by id) are the same, naming what one has and the other lacks.
pub fn same_triggers(
    want: &BTreeMap<String, serde_json::Value>,
    got: &BTreeMap<String, serde_json::Value>,
    what: &str,
) {
    let names = |a: &BTreeMap<String, serde_json::Value>,
                 b: &BTreeMap<String, serde_json::Value>| {
        a.iter()
            .filter(|(k, _)| !b.contains_key(*k))
            .map(|(_, t)| format!("{} {} {}", t["rule"], t["subject"], t["detected_at"]))
            .collect::<Vec<_>>()
    };
    let (missing, extra) = (names(want, got), names(got, want));
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:?}, extra {extra:?}"
    );
    let differ: Vec<String> = want
        .iter()
        .filter(|(k, t)| got.get(*k) != Some(t))
        .map(|(k, t)| format!("replay {t}\nrun    {}", got[k]))
        .collect();
    assert!(
        differ.is_empty(),
        "{what}: same ids, other content:\n{}",
        differ.join("\n")
    );
}

/// Every record of `topic` as JSON, read until nothing new comes for `quiet`.
pub fn read_json(bootstrap: &str, topic: &str, quiet: Duration) -> Vec<serde_json::Value> {
    read(bootstrap, topic, usize::MAX, quiet)
        .iter()
        .map(Rec::json)
        .collect()
}
