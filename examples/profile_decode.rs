//! Profiling aid for the engine bench: `profile_decode [serde|decode|apply|batch|both|both_batch|memory] [employees] [days]`
//! builds the bench's stream (week one applied untimed into a warm engine), prints `ready` on
//! stderr, then runs one part of the JSON path over week two — a `perf record -D` target.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::sync::Arc;

/// Counts live heap bytes and blocks, to report the engine's in-memory size per employee.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);
/// Allocations made (not live): calls to alloc and realloc.
static ALLOCS: AtomicIsize = AtomicIsize::new(0);
static BY_SIZE: [AtomicIsize; 1025] = [const { AtomicIsize::new(0) }; 1025];
fn class(n: usize) -> usize {
    n.min(1024)
}
static TRACE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
thread_local!(static IN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
fn trace(size: usize) {
    if TRACE.load(Relaxed)
        && (size >= 1024 || ALLOCS.load(Relaxed) % 997 == 0)
        && !IN.with(|c| c.replace(true))
    {
        let bt = std::backtrace::Backtrace::force_capture().to_string();
        let frames: Vec<&str> = bt
            .lines()
            .filter(|l| l.contains("momentd::") && !l.contains("at "))
            .take(4)
            .collect();
        eprintln!("ALLOC {}", frames.join(" <- "));
        IN.with(|c| c.set(false));
    }
}
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        trace(l.size());
        LIVE.fetch_add(l.size() as isize, Relaxed);
        BLOCKS.fetch_add(1, Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        BY_SIZE[class(l.size())].fetch_add(1, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        BLOCKS.fetch_sub(1, Relaxed);
        BY_SIZE[class(l.size())].fetch_sub(1, Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        trace(n);
        LIVE.fetch_add(n as isize - l.size() as isize, Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        BY_SIZE[class(l.size())].fetch_sub(1, Relaxed);
        BY_SIZE[class(n)].fetch_add(1, Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static A: Counting = Counting;

/// The engine bench's baseline, the same struct.
#[path = "../benches/support/baseline.rs"]
mod baseline;
use baseline::Baseline;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "both".into());
    let n: u32 = std::env::args()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let days: u32 = std::env::args()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let all = momentd::synth::everyday(n, 2 * days, 42);
    let split = momentd::synth::EPOCH + days as i64 * momentd::time::DAY;
    let (warmup, events): (Vec<_>, Vec<_>) = all.into_iter().partition(|e| e.occurred_at < split);
    let json: Vec<String> = events.iter().map(momentd::event::encode_json).collect();
    let rules = Arc::new(momentd::rules::RuleSet::compile(
        &momentd::config::Settings::default(),
    ));
    let limits = momentd::Limits::default();
    let (live0, blocks0) = (LIVE.load(Relaxed), BLOCKS.load(Relaxed));
    let before: Vec<isize> = BY_SIZE.iter().map(|c| c.load(Relaxed)).collect();
    let mut e = momentd::Engine::new(Arc::clone(&rules), Default::default());
    let mut out = Vec::with_capacity(1024);
    for ev in &warmup {
        e.apply(ev, &mut out);
        out.clear();
    }
    eprintln!(
        "engine after the warm-up ({days} days): {} employees, {:.0} heap bytes and {:.1} blocks per employee",
        e.employees(),
        (LIVE.load(Relaxed) - live0) as f64 / e.employees() as f64,
        (BLOCKS.load(Relaxed) - blocks0) as f64 / e.employees() as f64,
    );
    if mode == "memory" {
        let mut v: Vec<(isize, usize)> = BY_SIZE
            .iter()
            .zip(&before)
            .enumerate()
            .map(|(n, (c, b))| ((c.load(Relaxed) - b) * n as isize, n))
            .collect();
        v.sort();
        for (bytes, size) in v.iter().rev().take(15) {
            eprintln!(
                "  {size:>5} B blocks: {:.1} per employee, {:.0} B",
                *bytes as f64 / *size as f64 / e.employees() as f64,
                *bytes as f64 / e.employees() as f64
            );
        }
    }
    let allocs0 = ALLOCS.load(Relaxed);
    let start = std::time::Instant::now();
    eprintln!("ready");
    TRACE.store(std::env::var("ALLOC_TRACE").is_ok(), Relaxed);
    // `perf record -D -1 --control fifo:$PERF_CTL` starts recording here.
    if let Ok(path) = std::env::var("PERF_CTL") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) {
            let _ = f.write_all(b"enable\n");
        }
    }
    let mut sink = 0usize;
    match mode.as_str() {
        "decode" => json.iter().for_each(|l| {
            sink += momentd::event::decode_json(l.as_bytes(), &limits)
                .unwrap()
                .occurred_at as usize
        }),
        "serde" => json
            .iter()
            .for_each(|l| sink += serde_json::from_str::<Baseline>(l).unwrap().event_id.len()),
        "apply" => events.iter().for_each(|ev| {
            e.apply(ev, &mut out);
            out.clear();
        }),
        "batch" => {
            let mut outcomes = Vec::new();
            for chunk in events.chunks(256) {
                e.apply_batch(chunk, &mut out, &mut outcomes);
                out.clear();
                outcomes.clear();
            }
        }
        "both_batch" => {
            let mut outcomes = Vec::new();
            for chunk in json.chunks(64) {
                let evs: Vec<_> = chunk
                    .iter()
                    .map(|l| momentd::event::decode_json(l.as_bytes(), &limits).unwrap())
                    .collect();
                e.apply_batch(&evs, &mut out, &mut outcomes);
                out.clear();
                outcomes.clear();
            }
        }
        _ => json.iter().for_each(|l| {
            let ev = momentd::event::decode_json(l.as_bytes(), &limits).unwrap();
            e.apply(&ev, &mut out);
            out.clear();
        }),
    }
    eprintln!(
        "{mode}: {:.0} ns/event over {} events, {:.2} allocations per event ({sink})",
        start.elapsed().as_nanos() as f64 / json.len() as f64,
        json.len(),
        (ALLOCS.load(Relaxed) - allocs0) as f64 / json.len() as f64
    );
    // Skip dropping the stream and the engine: not part of what is profiled.
    std::process::exit(0);
}
