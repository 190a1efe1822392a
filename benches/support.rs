//! What the daemon, soak and restore benches share: the mock broker in its own process, child processes
//! that die with the bench, and readings of a daemon's /metrics and a process's memory.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

/// A child process killed when dropped.
pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The environment variable `name`, or `default`.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `momentd-mock-broker` with `topics` (`NAME:PARTITIONS`): the process, its bootstrap
/// address, and a function that creates a topic through its command line.
pub fn mock_broker(topics: &[String]) -> (Proc, String, impl FnMut(&str, i32)) {
    let mut broker = Command::new(env!("CARGO_BIN_EXE_momentd-mock-broker"))
        .args(topics)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("mock broker");
    let mut line = String::new();
    let mut answers = BufReader::new(broker.stdout.take().unwrap());
    answers.read_line(&mut line).unwrap();
    let bootstrap = line.trim().trim_start_matches("bootstrap=").to_string();
    let mut commands = broker.stdin.take().unwrap();
    let create = move |name: &str, n: i32| {
        writeln!(commands, "create {name} {n}").unwrap();
        commands.flush().unwrap();
        let mut a = String::new();
        answers.read_line(&mut a).unwrap();
        assert_eq!(a.trim(), "ok", "creating {name}");
    };
    (Proc(broker), bootstrap, create)
}

/// A GET of `path` from a daemon's HTTP server: the status and the body.
pub fn get(http: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(http).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split(' ').nth(1)?.parse().ok()?;
    Some((status, buf.split_once("\r\n\r\n")?.1.to_string()))
}

/// The body of a daemon's /metrics (empty when it does not answer).
pub fn scrape(http: &str) -> String {
    get(http, "/metrics").map(|x| x.1).unwrap_or_default()
}

/// The sum of every series of `name`.
pub fn metric(http: &str, name: &str) -> f64 {
    scrape(http)
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// The cumulative buckets (upper bound, count) of histogram `name`.
pub fn buckets(http: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    scrape(http)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, v) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, v.parse().ok()?))
        })
        .collect()
}

/// The upper bound of the bucket holding quantile `q` (as Prometheus would interpolate, the
/// bound is the conservative answer).
pub fn bucket_quantile(b: &[(f64, f64)], q: f64) -> f64 {
    let total = b.last().map_or(0.0, |x| x.1);
    b.iter()
        .find(|(_, c)| *c >= q * total)
        .map_or(f64::NAN, |x| x.0)
}

/// A process's memory figure from /proc (`VmRSS`, `VmHWM` — the peak), in MiB.
pub fn vm_mib(pid: u32, field: &str) -> f64 {
    kb_field_mib(&format!("/proc/{pid}/status"), field)
}

/// Of a process's RSS, the pages its allocator gave back with `MADV_FREE` (`LazyFree` in
/// `/proc/PID/smaps_rollup`), MiB: still counted in RSS until the kernel needs them, then
/// reclaimed without a write-back (cgroup v2 counts them as inactive file pages, outside a
/// container's working set).
pub fn lazy_free_mib(pid: u32) -> f64 {
    kb_field_mib(&format!("/proc/{pid}/smaps_rollup"), "LazyFree")
}

/// A `Field:   N kB` line of a /proc file, in MiB (0 when absent).
fn kb_field_mib(path: &str, field: &str) -> f64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds a process has used so far, all its threads, user and system (`/proc/PID/stat`
/// fields 14 and 15, in clock ticks of 1/100 s); 0 when it is gone.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}
