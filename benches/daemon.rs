//! `momentd run` through a broker on loopback (the mock cluster in its own process), measured
//! against a baseline in the same run:
//!
//! 1. Throughput: a plain rdkafka consumer that only counts the messages of the input topic,
//!    then `momentd run` over the same messages (decode, engine, triggers produced, offsets
//!    committed). Both rates are taken from the first message consumed to the last.
//! 2. Latency at a steady 20,000 events/s: the simulated stream, with probe events (each causes
//!    one trigger) mixed in; event -> trigger latency is the time from producing a probe to
//!    reading its trigger from the output topic. The daemon's own histogram (receipt -> trigger
//!    acknowledged) is reported beside it.
//!
//! The streams come from `momentd simulate` (everyday behaviour, patterns, duplicates and
//! malformed records).
//!
//! Run: `cargo bench --bench daemon` (EMPLOYEES, DAYS, RATE, SECS change the load; MOMENTD_BIN
//! and MOMENTD_DIR run another build of the daemon, with its checkout's configuration;
//! COMPARE_BIN and COMPARE_DIR run a second build in every round too, for a paired A/B).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support.rs"]
mod support;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use support::*;

const INPUT: &str = "hr.interactions";
const OUTPUT: &str = "hr.triggers";
/// Throughput rounds (odd: the median is one of them); `ROUNDS` in the environment overrides.
const ROUNDS: usize = 9;
/// The mock cluster keeps at most about 5 MB (or 100,000 messages) per partition and deletes
/// older segments: the stream is spread over enough partitions that every message stays
/// (PARTITIONS changes it).
fn partitions() -> i32 {
    env_num("PARTITIONS", 24) as i32
}

/// Busy, total and stolen CPU time of the whole machine so far (jiffies, from /proc/stat): how
/// many of the cores a phase kept busy, broker included, and how much of the time the
/// hypervisor gave the cores to other machines (busy includes it).
fn cpu() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total, v.get(7).copied().unwrap_or(0))
}

/// Cores busy between two `cpu()` readings.
fn cores_busy(a: (u64, u64, u64), b: (u64, u64, u64)) -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    (b.0 - a.0) as f64 / (b.1 - a.1).max(1) as f64 * cores
}

/// The backlog memory bound (README, "Memory under a backlog"): what an idle daemon holds,
/// plus prefetched input (`queued.max.messages.kbytes` = 4 MiB per assigned partition, and one
/// fetch in flight of `fetch.max.bytes` = 50 MiB), plus the engine's state, plus the two
/// producers' queues (`queue.buffering.max.messages` = 100,000 records each, a trigger at most
/// 1 KiB and a changelog record about 600 bytes).
fn backlog_bound_mib(idle_rss: f64, partitions: i32, state_mib: f64) -> f64 {
    idle_rss + partitions as f64 * 4.0 + 50.0 + state_mib + 100_000.0 * (1024.0 + 600.0) / 1048576.0
}

fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", env_or("COMPRESSION", "none"))
        .create()
        .unwrap()
}

fn send(p: &BaseProducer, key: &str, value: &str) {
    let mut rec = Some(BaseRecord::to(INPUT).key(key).payload(value));
    while let Some(r) = rec.take() {
        if let Err((_, back)) = p.send(r) {
            rec = Some(back);
            p.poll(Duration::from_millis(1));
        }
    }
}

/// The least value of a gauge over its series (`None` while it has none).
fn least(http: &str, name: &str) -> Option<f64> {
    scrape(http)
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .filter(|v| *v > 0.0)
        .min_by(f64::total_cmp)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// A plain rdkafka consumer that only counts the input topic's messages: msg/s from the first
/// message to the last.
fn count_baseline(bootstrap: &str, n: usize, round: usize, broker: u32) -> (f64, f64, Split) {
    // The fetch settings momentd runs with (its default fetch.queue.backoff.ms, and this
    // bench's fetch.wait.max.ms): the same fetcher, only the processing differs.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-count-{round}"))
        .set("fetch.queue.backoff.ms", "20")
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for part in 0..partitions() {
        tpl.add_partition_offset(INPUT, part, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut count = 0usize;
    let mut bytes = 0usize;
    let mut first = None;
    let mut cpu0 = cpu();
    let me = std::process::id();
    let mut split0 = Split::now(me, broker);
    let mut last = Instant::now();
    while count < n {
        assert!(
            last.elapsed() < Duration::from_secs(10),
            "the counting consumer got only {count} of {n} messages"
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            last = Instant::now();
            if first.is_none() {
                first = Some(Instant::now());
                cpu0 = cpu();
                split0 = Split::now(me, broker);
            }
            count += 1;
            bytes += m.payload().map_or(0, <[u8]>::len);
        }
    }
    std::hint::black_box(bytes);
    let rate = n as f64 / first.unwrap().elapsed().as_secs_f64();
    (
        rate,
        cores_busy(cpu0, cpu()),
        Split::now(me, broker).since(split0, n as f64),
    )
}

/// CPU of the consumer's process and of the mock broker's, together (`now`), or per message
/// between two readings (`since`), in microseconds: where a phase's CPU went.
#[derive(Clone, Copy)]
struct Split {
    consumer: f64,
    broker: f64,
    /// The share of the machine's time stolen by the hypervisor (between two readings).
    steal: f64,
    machine: (u64, u64, u64),
}

impl Split {
    fn now(consumer: u32, broker: u32) -> Split {
        Split {
            consumer: cpu_secs(consumer),
            broker: cpu_secs(broker),
            steal: 0.0,
            machine: cpu(),
        }
    }

    fn since(self, earlier: Split, n: f64) -> Split {
        Split {
            consumer: (self.consumer - earlier.consumer) / n * 1e6,
            broker: (self.broker - earlier.broker) / n * 1e6,
            steal: (self.machine.2 - earlier.machine.2) as f64
                / (self.machine.1 - earlier.machine.1).max(1) as f64,
            machine: self.machine,
        }
    }
}

/// A build of the daemon: its binary, and the checkout whose configuration it runs with.
struct Build {
    bin: String,
    dir: String,
}

impl Build {
    /// `MOMENTD_BIN` and `MOMENTD_DIR` run another build (an older commit's binary, with its
    /// own checkout's configuration) under the same harness; `COMPARE_BIN` and `COMPARE_DIR`
    /// add a second build to every round (the two alternate, first one then the other): the
    /// rounds' paired ratios are an A/B within seconds, where separate runs minutes apart
    /// differ by more than most changes do on this shared machine.
    fn from_env(bin: &str, dir: &str) -> Option<Build> {
        let bin = std::env::var(bin).ok()?;
        Some(Build {
            bin,
            dir: env_or(dir, env!("CARGO_MANIFEST_DIR")),
        })
    }
}

/// `momentd run` in a fresh group over the same topic: events/s from the first event consumed
/// to the last (counted by its own metrics), and the running process.
fn run_momentd(
    build: &Build,
    bootstrap: &str,
    n: usize,
    group: &str,
    changelog: bool,
    repartition: bool,
    broker: u32,
) -> (Proc, String, f64, f64, f64, f64, Split) {
    let http = format!("127.0.0.1:{}", free_port());
    let daemon = Command::new(&build.bin)
        .args(["run", "--config", "config/momentd.toml"])
        .current_dir(&build.dir)
        .env("MOMENTD__KAFKA__BROKERS", bootstrap)
        .env("MOMENTD__KAFKA__GROUP_ID", group)
        .env("MOMENTD__HTTP__LISTEN", &http)
        .env("MOMENTD__STATE__CHANGELOG", changelog.to_string())
        .env("MOMENTD__STATE__REPARTITION", repartition.to_string())
        // A round lasts about half a second: COMMIT_INTERVAL=100ms puts several checkpoints in
        // it (ten times the default's rate, a harsher test of their cost).
        .env(
            "MOMENTD__KAFKA__COMMIT_INTERVAL",
            std::env::var("COMMIT_INTERVAL").unwrap_or_else(|_| "1s".into()),
        )
        // The mock cluster answers a fetch only when fetch.wait.max.ms has passed if no data
        // was there when it arrived (a real broker answers as data comes): keep that wait short
        // so the latency measured is momentd's, not the mock's long poll.
        .env("MOMENTD__KAFKA__CLIENT__FETCH_WAIT_MAX_MS", "5")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("momentd run");
    let proc_ = Proc(daemon);
    let pid = proc_.0.id();
    let consumed = |h: &str| metric(h, "momentd_events_consumed_total");
    let mut idle_rss = 0.0;
    let mut first = None;
    let mut at_first = 0.0;
    let mut cpu0 = cpu();
    let mut split0 = Split::now(pid, broker);
    // The last two readings once events flow: (when, count).
    let mut prev: Option<(Instant, f64)> = None;
    let mut rate_seen: Option<f64> = None;
    let end = loop {
        let c = consumed(&http);
        let now = Instant::now();
        if idle_rss == 0.0 && !scrape(&http).is_empty() {
            // The first moment /metrics answers: started, before the backlog is read (the
            // assignment and its first fetches come after; the prefetch is in the bound).
            idle_rss = vm_mib(pid, "VmRSS");
        }
        if c > 0.0 && first.is_none() {
            first = Some(now);
            // Counted from here: what was consumed before the first reading is not in the rate.
            at_first = c;
            cpu0 = cpu();
            split0 = Split::now(pid, broker);
        }
        if c >= n as f64 {
            // The last event was consumed between the previous reading and this one: at the
            // rate of the readings before (the count stops at the end, so this reading's own
            // rate says nothing of when).
            break match (prev, rate_seen) {
                (Some((t1, c1)), Some(r)) if r > 0.0 => {
                    (t1 + Duration::from_secs_f64((n as f64 - c1) / r)).min(now)
                }
                _ => now,
            };
        }
        if let Some((t1, c1)) = prev.filter(|p| c > p.1) {
            rate_seen = Some((c - c1) / now.duration_since(t1).as_secs_f64());
        }
        if first.is_some() {
            prev = Some((now, c));
        }
        // Each reading costs the daemon a render of every series (2-4 ms of CPU for its ~500
        // lines; at 20 a second, 5 % of its workers' CPU in perf; Prometheus reads every
        // 15-30 s): every 250 ms once events flow, and just after the end as the rate so far
        // predicts it. Before the first event: every 10 ms.
        let wait = match (first, rate_seen) {
            (None, _) => Duration::from_millis(10),
            (Some(_), None) => Duration::from_millis(250),
            (Some(_), Some(r)) => Duration::from_secs_f64((n as f64 - c) / r.max(1.0) + 0.01)
                .clamp(Duration::from_millis(20), Duration::from_millis(250)),
        };
        std::thread::sleep(wait);
    };
    let rate = (n as f64 - at_first) / end.duration_since(first.unwrap()).as_secs_f64();
    let cores = cores_busy(cpu0, cpu());
    let split = Split::now(pid, broker).since(split0, n as f64 - at_first);
    let triggers = metric(&http, "momentd_triggers_total");
    (proc_, http, rate, cores, triggers, idle_rss, split)
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let employees = env_num("EMPLOYEES", 9_000) as u32;
    let days = env_num("DAYS", 21) as u32;
    let rate = env_num("RATE", 20_000);
    let secs = env_num("SECS", 20);

    let (broker, bootstrap, mut create_topic) = mock_broker(&[
        format!("{INPUT}:{}", partitions()),
        format!("{OUTPUT}:{}", partitions()),
        "hr.interactions.dlq:1".into(),
    ]);
    // The state changelog is on unless CHANGELOG=0; each round's group gets its own topic
    // (the mock cluster cannot create topics for the daemon).
    let changelog = env_num("CHANGELOG", 1) != 0;
    // So is the repartition stage, unless REPARTITION=0.
    let repartition = changelog && env_num("REPARTITION", 1) != 0;

    // The stream: `momentd simulate`'s workforce over `days` (everyday behaviour, injected
    // patterns, duplicates, malformed records), in event-time order.
    let sim = |days: u32, seed: u64| {
        momentd::sim::simulate(&momentd::sim::SimOptions {
            employees,
            days,
            seed,
            ..Default::default()
        })
    };
    let keyed = |r: &momentd::sim::Record| {
        let (k, v) = momentd::sim::key_and_value(r);
        (k.unwrap_or_else(|| "malformed".into()), v)
    };
    let lines: Vec<(String, String)> = sim(days, 42).records.iter().map(keyed).collect();
    let n = lines.len();
    let p = producer(&bootstrap);
    for (k, v) in &lines {
        send(&p, k, v);
    }
    p.flush(Duration::from_secs(60)).unwrap();
    eprintln!(
        "bench: {n} events of {employees} employees over {days} days in {INPUT} ({} partitions)",
        partitions()
    );

    // 1. Rounds, each a counting consumer then `momentd run` in a fresh group; the medians are
    // compared, and so are the rounds' own ratios (the machine is shared: one round can be
    // disturbed, and both sides drift with what else runs).
    let rounds = (env_num("ROUNDS", ROUNDS as u64) as usize).max(1) | 1;
    let mut base_rates = Vec::new();
    let mut run_rates = Vec::new();
    let mut ratios = Vec::new();
    let mut daemon = None;
    let this = Build::from_env("MOMENTD_BIN", "MOMENTD_DIR").unwrap_or(Build {
        bin: env!("CARGO_BIN_EXE_momentd").into(),
        dir: env!("CARGO_MANIFEST_DIR").into(),
    });
    let other = Build::from_env("COMPARE_BIN", "COMPARE_DIR");
    // With COMPARE_BIN: each round's rate of this build over the other's.
    let mut paired = Vec::new();
    let mut run = |group: String| {
        if changelog {
            create_topic(&format!("{group}-state-changelog"), partitions());
        }
        if repartition {
            create_topic(&format!("{group}-groups-repartition"), partitions());
            // (The population topic, with the repartition stage: one partition.)
            create_topic(&format!("{group}-population"), 1);
        }
        group
    };
    for round in 0..rounds {
        // The previous round's daemon stops first: idle, it still polls the broker.
        drop(daemon.take());
        let (base_rate, base_cores, base_split) =
            count_baseline(&bootstrap, n, round, broker.0.id());
        // Alternate which build goes first, so neither always runs on a warmer machine (the
        // last round's daemon, this build's, stays for the latency below: it goes second).
        let compare_first = other.is_none() || (rounds - 1 - round) % 2 == 0;
        let compare = |run: &mut dyn FnMut(String) -> String| {
            let other = other.as_ref()?;
            let group = run(format!("bench-compare-{round}"));
            let r = run_momentd(
                other,
                &bootstrap,
                n,
                &group,
                changelog,
                repartition,
                broker.0.id(),
            );
            Some((r.2, r.6.consumer))
        };
        let before = if compare_first {
            compare(&mut run)
        } else {
            None
        };
        let group = run(format!("bench-run-{round}"));
        let (proc_, http, run_rate, run_cores, triggers, idle_rss, run_split) = run_momentd(
            &this,
            &bootstrap,
            n,
            &group,
            changelog,
            repartition,
            broker.0.id(),
        );
        let written = metric(&http, "momentd_changelog_records_written_total");
        // Which records: employees, groups, waiting contributions, deletions, clocks.
        let kinds: Vec<String> = scrape(&http)
            .lines()
            .filter(|l| l.starts_with("momentd_changelog_records_written_total{"))
            .filter_map(|l| {
                let kind = l.split("kind=\"").nth(1)?.split('"').next()?;
                let v = l.rsplit_once(' ')?.1;
                (v != "0").then(|| format!("{kind} {v}"))
            })
            .collect();
        // Memory under a backlog: the whole stream waited in the topic before this daemon
        // started, over `partitions()` partitions.
        let peak = vm_mib(proc_.0.id(), "VmHWM");
        let state = metric(&http, "momentd_state_bytes") / 1048576.0;
        let bound = backlog_bound_mib(idle_rss, partitions(), state);
        eprintln!(
            "bench: round {round}: backlog of {n} events over {} partitions: peak RSS {peak:.0} MiB, bound {bound:.0} MiB (idle {idle_rss:.0} + prefetch {} + state {state:.0} + producer queues {:.0}) = {:.2} of the bound",
            partitions(),
            partitions() * 4 + 50,
            100_000.0 * (1024.0 + 600.0) / 1048576.0,
            peak / bound
        );
        eprintln!(
            "bench: round {round}: plain consumer counting {base_rate:.0} msg/s ({base_cores:.2} cores busy, {:.2} us CPU a message: consumer {:.2} + broker {:.2}; {:.0} % stolen); momentd run {run_rate:.0} events/s ({run_cores:.2} cores busy, {:.2} us CPU an event: momentd {:.2} + broker {:.2}; {:.0} % stolen; {triggers} triggers acknowledged so far; changelog {}: {written} records, {:.3} per event: {}) = {:.2}",
            base_cores / base_rate * 1e6,
            base_split.consumer,
            base_split.broker,
            base_split.steal * 100.0,
            run_cores / run_rate * 1e6,
            run_split.consumer,
            run_split.broker,
            run_split.steal * 100.0,
            if changelog { "on" } else { "off" },
            written / n as f64,
            kinds.join(", "),
            run_rate / base_rate
        );
        base_rates.push(base_rate);
        run_rates.push(run_rate);
        ratios.push(run_rate / base_rate);
        let after = if compare_first {
            daemon = Some((proc_, http));
            None
        } else {
            // (This build's daemon stops first: idle, it would poll beside the other.)
            drop(proc_);
            compare(&mut run)
        };
        if let Some((o, cpu)) = before.or(after) {
            eprintln!(
                "bench: round {round}: the compared build {o:.0} events/s ({cpu:.2} us CPU an event in its process, this build {:.2}) = {:.2} x the plain consumer; this build / the compared = {:.3}",
                run_split.consumer,
                o / base_rate,
                run_rate / o
            );
            paired.push(run_rate / o);
        }
    }
    for v in [&mut base_rates, &mut run_rates, &mut ratios] {
        v.sort_by(f64::total_cmp);
    }
    let mid = rounds / 2;
    eprintln!(
        "bench: median of {rounds}: plain consumer {:.0} msg/s, momentd run {:.0} events/s = {:.2} x the plain consumer; median of the rounds' ratios {:.2} (quartiles {:.2}-{:.2})",
        base_rates[mid],
        run_rates[mid],
        run_rates[mid] / base_rates[mid],
        ratios[mid],
        ratios[rounds / 4],
        ratios[rounds - 1 - rounds / 4],
    );
    if !paired.is_empty() {
        paired.sort_by(f64::total_cmp);
        let k = paired.len();
        eprintln!(
            "bench: this build / the compared build, paired by round: median {:.3} (quartiles {:.3}-{:.3}), {} of {k} rounds above 1",
            paired[k / 2],
            paired[k / 4],
            paired[k - 1 - k / 4],
            paired.iter().filter(|&&r| r > 1.0).count()
        );
    }
    let (daemon, http) = daemon.expect("the rounds ran");
    let consumed = |h: &str| metric(h, "momentd_events_consumed_total");

    // 2. Latency at a steady rate: everyday events (later days) with probes mixed in.
    let start = momentd::synth::EPOCH + days as i64 * momentd::time::DAY;
    let steady: Vec<(String, String)> = sim(days + 30, 43)
        .records
        .iter()
        .filter(|r| match r {
            momentd::sim::Record::Event(e) => e.occurred_at >= start,
            momentd::sim::Record::Malformed(_) => true,
        })
        .map(keyed)
        .collect();
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let reader = {
        let sent = Arc::clone(&sent);
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "bench-latency")
                .set("fetch.wait.max.ms", "5")
                .create()
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            for part in 0..partitions() {
                tpl.add_partition_offset(OUTPUT, part, Offset::End).unwrap();
            }
            c.assign(&tpl).unwrap();
            let mut lat = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(secs + 15);
            while Instant::now() < deadline {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                    let now = Instant::now();
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    if let Some(t) = sent.lock().unwrap().remove(&key) {
                        lat.push(now.duration_since(t).as_secs_f64() * 1000.0);
                    }
                }
            }
            lat
        })
    };
    // The group stages' time against the slowest employee partition's, sampled through the
    // steady phase.
    let sampler = {
        let http = http.clone();
        std::thread::spawn(move || {
            let mut samples: Vec<(Instant, f64, f64)> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(secs + 4);
            while Instant::now() < deadline {
                let e = least(&http, "momentd_watermark_timestamp_seconds");
                let g = least(&http, "momentd_group_watermark_timestamp_seconds");
                if let (Some(e), Some(g)) = (e, g) {
                    samples.push((Instant::now(), e, g));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            samples
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let before = consumed(&http);
    let b0 = buckets(&http, "momentd_processing_latency_seconds");
    let p = producer(&bootstrap);
    let tick = Duration::from_millis(10);
    let per_tick = (rate as f64 * tick.as_secs_f64()) as usize;
    let began = Instant::now();
    let mut i = 0usize;
    let mut probes = 0usize;
    let probe_time = momentd::time::format_rfc3339(start + 40 * momentd::time::DAY);
    while began.elapsed() < Duration::from_secs(secs) {
        let due = began + tick * (i / per_tick.max(1)) as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let (k, v) = &steady[i % steady.len()];
        send(&p, k, v);
        if i % 100 == 0 {
            // A probe: its own employee, one trigger.
            let emp = format!("probe-{probes}");
            let ev = serde_json::json!({"event_id": format!("{emp}-1"), "employee_id": emp,
                "occurred_at": probe_time, "type": "learning.module_abandoned",
                "attrs": {"module_id": "m", "progress_pct": 90, "before_assessment": true}})
            .to_string();
            sent.lock().unwrap().insert(emp.clone(), Instant::now());
            send(&p, &emp, &ev);
            probes += 1;
        }
        p.poll(Duration::ZERO);
        i += 1;
    }
    p.flush(Duration::from_secs(10)).unwrap();
    let achieved = i as f64 / began.elapsed().as_secs_f64();
    let mut lat = reader.join().unwrap();
    lat.sort_by(f64::total_cmp);
    let processed = consumed(&http) - before;
    // The steady phase's own histogram: the buckets now minus those before it.
    let b: Vec<(f64, f64)> = buckets(&http, "momentd_processing_latency_seconds")
        .into_iter()
        .map(|(le, c)| (le, c - b0.iter().find(|x| x.0 == le).map_or(0.0, |x| x.1)))
        .collect();
    eprintln!(
        "bench: steady load: {achieved:.0} events/s offered for {secs} s ({processed} consumed), {probes} probes, {} triggers read",
        lat.len()
    );
    // For each sample, how long (wall clock) until the group stages' time reached the slowest
    // employee partition's watermark of that moment.
    let samples = sampler.join().unwrap();
    let mut trail: Vec<f64> = samples
        .iter()
        .enumerate()
        .filter_map(|(i, &(t, e, _))| {
            samples[i..]
                .iter()
                .find(|s| s.2 >= e)
                .map(|s| s.0.duration_since(t).as_secs_f64())
        })
        .collect();
    trail.sort_by(f64::total_cmp);
    if trail.is_empty() {
        eprintln!("bench: group watermark: no samples (REPARTITION=0?)");
    } else {
        eprintln!(
            "bench: group stages' time behind the slowest employee partition's watermark: p50 {:.2} s, p99 {:.2} s ({} samples)",
            quantile(&trail, 0.5),
            quantile(&trail, 0.99),
            trail.len()
        );
    }
    eprintln!(
        "bench: event -> trigger latency (produce probe -> read trigger): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        quantile(&lat, 0.5),
        quantile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    eprintln!(
        "bench: daemon histogram (receipt -> trigger acknowledged), bucket bounds: p50 <= {} s, p99 <= {} s",
        bucket_quantile(&b, 0.5),
        bucket_quantile(&b, 0.99)
    );

    // 3. Idle: nothing more comes; what the daemon spends waiting (its timers, librdkafka's
    // polls and the delivery threads' waits).
    std::thread::sleep(Duration::from_secs(2));
    let pid = daemon.0.id();
    let (c0, t0) = (cpu_secs(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    eprintln!(
        "bench: idle daemon: {:.2} % of a core",
        (cpu_secs(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0
    );
}
