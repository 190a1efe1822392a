//! What the group stage costs an event, in process (`cargo run --release --example
//! profile_stage [EMPLOYEES] [DAYS]`): the daemon bench's stream through one engine as
//! `replay` runs it, then through an engine in publish mode whose contributions are encoded,
//! decoded and taken by a second engine's group stage, as the repartition topic carries them.

use std::time::Instant;

use momentd::config::Settings;
use momentd::engine::Engine;
use momentd::runtime::repartition::{Message, Repartition};

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (employees, days) = (*args.first().unwrap_or(&9_000), *args.get(1).unwrap_or(&21));
    let sim = momentd::sim::simulate(&momentd::sim::SimOptions {
        employees,
        days,
        seed: 42,
        ..Default::default()
    });
    let mut evs: Vec<momentd::event::Event<'static>> = sim
        .records
        .into_iter()
        .filter_map(|r| match r {
            momentd::sim::Record::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    evs.sort_by_key(|e| e.occurred_at);
    let s = Settings::default();
    let mut out = Vec::new();
    let t = Instant::now();
    let mut local = Engine::from_settings(&s, None);
    for ev in &evs {
        local.apply(ev, &mut out);
    }
    let local_s = t.elapsed().as_secs_f64();
    out.clear();
    let rep = Repartition {
        topic: "r".into(),
        partitions: 1,
    };
    let mut e = Engine::from_settings(&s, None);
    e.publish_contributions(0, 1);
    let (mut n_contrib, mut bytes) = (0usize, 0usize);
    let (mut apply_s, mut encode_s, mut stage_s) = (0.0, 0.0, 0.0);
    for (i, chunk) in evs.chunks(1024).enumerate() {
        let t = Instant::now();
        for (j, ev) in chunk.iter().enumerate() {
            let k = e.keys(ev);
            e.apply_at(ev, k, (0, (i * 1024 + j) as i64), &mut out);
        }
        let cs: Vec<_> = e.take_contributions().collect();
        apply_s += t.elapsed().as_secs_f64();
        n_contrib += cs.len();
        let t = Instant::now();
        let records = rep.contributions(0, cs.into_iter());
        let msgs: Vec<Message> = records
            .iter()
            .map(|r| {
                bytes += r.payload.as_ref().map_or(0, Vec::len);
                Message::decode(r.payload.as_deref().unwrap_or_default()).unwrap()
            })
            .collect();
        encode_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        for m in msgs {
            if let Message::Contributions(v) = m {
                for (c, from) in v {
                    e.receive(c, Some(from), Some((1, i as i64)), &mut out);
                }
            }
        }
        if let Some(w) = e.watermark() {
            e.source_watermark(0, w, &mut out);
        }
        stage_s += t.elapsed().as_secs_f64();
    }
    let n = evs.len() as f64;
    println!(
        "{} events, {n_contrib} contributions ({:.2} an event, {:.0} bytes each encoded)",
        evs.len(),
        n_contrib as f64 / n,
        bytes as f64 / n_contrib.max(1) as f64
    );
    println!("replay's one engine: {:.2} us an event", local_s / n * 1e6);
    println!(
        "publish mode: employee stage {:.2} us, encode + decode {:.2} us, group stage {:.2} us an event",
        apply_s / n * 1e6,
        encode_s / n * 1e6,
        stage_s / n * 1e6
    );
}
