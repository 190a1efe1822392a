//! A real Prometheus server (Debian's `prometheus`) on loopback scrapes a running `momentd run`;
//! every metric the Grafana dashboard and the alert rules use is there, with data.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

struct Prometheus(Child);
impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /api/v1/query`: the result vector.
fn query(addr: &str, q: &str) -> Vec<serde_json::Value> {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return vec![];
    };
    let _ = write!(
        s,
        "GET /api/v1/query?query={} HTTP/1.0\r\nHost: p\r\n\r\n",
        urlencode(q)
    );
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    let json = body.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

/// The PromQL expressions of the dashboard (every `expr`) and of the alert rules.
fn expressions() -> Vec<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(e) = m.get("expr").and_then(|e| e.as_str()) {
                    out.push(e.to_string());
                }
                m.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/grafana/momentd.json")).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    walk(&dash, &mut out);
    let alerts = std::fs::read_to_string(format!("{root}/deploy/prometheus/alerts.yaml")).unwrap();
    let mut current: Option<String> = None;
    for line in alerts.lines() {
        let t = line.trim();
        if let Some(e) = t.strip_prefix("expr:") {
            current = Some(e.trim().trim_start_matches('|').to_string());
        } else if t.starts_with("for:") {
            out.extend(current.take());
        } else if let Some(c) = current.as_mut() {
            c.push(' ');
            c.push_str(t);
        }
    }
    out
}

/// The metric names the expressions use.
fn used_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for e in expressions() {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("momentd_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    names
}

#[test]
fn prometheus_scrapes_every_metric_the_dashboard_and_alerts_use() {
    let _g = serial();
    let b = Broker::start(Kind::Mock, &[(INPUT, 1), (OUTPUT, 1), (DLQ, 1)]);
    let d = Daemon::start(&b, "g-prom", &[]);
    d.wait_ready(Duration::from_secs(60));
    let lines: Vec<String> = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/sample-events.jsonl"
    ))
    .unwrap()
    .lines()
    .filter(|l| !l.trim().is_empty())
    .map(str::to_string)
    .collect();
    let want = replay(&lines).len() as f64;
    produce(&b.bootstrap, INPUT, &json_inputs(&lines));
    d.wait_metric("momentd_triggers_total", &[], want, Duration::from_secs(30));

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: momentd\n    static_configs:\n      - targets: ['{}']\n",
            d.http
        ),
    )
    .unwrap();
    let _prom = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("prometheus.log")).unwrap(),
            ))
            .spawn()
            .expect("prometheus runs (Debian package prometheus; scripts/setup.sh installs it)"),
    );
    let used = used_metrics();
    assert!(
        used.len() >= 15,
        "the dashboard and alerts use the metrics: {used:?}"
    );
    assert!(
        expressions().len() >= 30,
        "every panel query and alert expression is read"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = query(&addr, "up{job=\"momentd\"}");
        let missing: Vec<&String> = used
            .iter()
            .filter(|m| {
                query(
                    &addr,
                    &format!("count({{__name__=\"{m}\",job=\"momentd\"}})"),
                )
                .is_empty()
            })
            .collect();
        if missing.is_empty() && up.first().and_then(|r| r["value"][1].as_str()) == Some("1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has no data for {missing:?} (up = {up:?})"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // And a dashboard query computes: triggers by rule, as the daemon counted them.
    let by_rule = query(
        &addr,
        "sum by (rule) (momentd_triggers_total{job=\"momentd\"})",
    );
    let total: f64 = by_rule
        .iter()
        .map(|r| r["value"][1].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, want);
    assert!(by_rule
        .iter()
        .any(|r| r["metric"]["rule"] == "checkin_lapse"));
}
