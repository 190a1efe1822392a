//! The multi-input merge by event time (after Kafka Streams' `PartitionGroup`).
//!
//! With two or more input topics the task merges them: the message with the smallest
//! `occurred_at` at the head of an input goes first, ties to the input listed first in
//! `kafka.input_topics`, so the engine sees one order whatever the timing of the fetches.
//! What is not an event (a dead letter) has no time to wait for and goes at once. An input
//! with nothing buffered holds the others back until it has messages, until it is known to be
//! caught up (everything up to the partition's high watermark, as the last fetch reported it,
//! is processed), or for at most [`MAX_MERGE_WAIT`] (after Kafka Streams'
//! `max.task.idle.ms`).
//!
//! [`next`] and [`may_pass`] are the rule, without a broker; [`PartitionTask::merge`] applies
//! it to the inputs' buffers.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::input::{Buffered, Pulled};
use super::PartitionTask;
use crate::event::{Event, Reject};
use crate::runtime::queue::Msg;
use crate::time::Ts;

/// The longest an input with nothing buffered, not known to be caught up, holds the task's
/// other inputs back.
pub const MAX_MERGE_WAIT: Duration = Duration::from_secs(1);

/// What goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The head of this input.
    Input(usize),
    /// An input with nothing buffered holds the others back.
    Held,
    /// Nothing is buffered.
    Done,
}

/// Of the inputs' heads' times (`None`: nothing buffered), which goes next: the smallest time,
/// ties to the input listed first — unless an input with nothing buffered may not be passed
/// over (`may_pass`, asked of each empty input).
pub fn next(heads: &[Option<Ts>], mut may_pass: impl FnMut(usize) -> bool) -> Next {
    let mut best: Option<(Ts, usize)> = None;
    let mut held = false;
    for (i, head) in heads.iter().enumerate() {
        match head {
            Some(t) => {
                if best.is_none_or(|(bt, _)| *t < bt) {
                    best = Some((*t, i));
                }
            }
            None => held |= !may_pass(i),
        }
    }
    match best {
        _ if held => Next::Held,
        Some((_, i)) => Next::Input(i),
        None => Next::Done,
    }
}

/// Whether an input with nothing buffered may be passed over at `now`: it is caught up, or it
/// has held the others back since `holding_since` for [`MAX_MERGE_WAIT`] (the wait starts at
/// the first look; it is over once the input is caught up or has messages again).
pub fn may_pass(holding_since: &mut Option<Instant>, caught_up: bool, now: Instant) -> bool {
    if caught_up {
        *holding_since = None;
        return true;
    }
    let since = *holding_since.get_or_insert(now);
    now.duration_since(since) >= MAX_MERGE_WAIT
}

impl PartitionTask {
    /// Whether input `i` is caught up: everything up to its high watermark (as librdkafka's
    /// last fetch reported it) is processed (or restored).
    fn caught_up(&self, i: usize, restored: &[i64]) -> bool {
        let next = self
            .out
            .next(i)
            .or_else(|| restored.get(i).copied().filter(|&t| t >= 0));
        match (self.watermarks)(i) {
            Some((low, high)) => match next {
                Some(n) => n >= high,
                None => high <= low,
            },
            None => false,
        }
    }

    /// Merges the inputs' buffered messages by event time and processes them, until every
    /// buffer is empty, an empty input holds the rest back, or the population barrier stops
    /// input.
    pub(super) fn merge(&mut self) -> Pulled {
        let n = self.events;
        let mut bufs: Vec<VecDeque<Buffered>> = self
            .inputs
            .iter_mut()
            .take(n)
            .map(|i| std::mem::take(&mut i.buffered))
            .collect();
        let restored = self.restored_through();
        let now = Instant::now();
        let mut heads = vec![0usize; n];
        let mut held = false;
        let mut any_event = false;
        {
            let lists: Vec<Vec<(Msg<'_>, Instant)>> = bufs
                .iter()
                .map(|q| q.iter().flat_map(Buffered::rest).collect())
                .collect();
            let limits = self.limits();
            let decoded: Vec<Vec<Result<Event<'_>, Reject>>> = lists
                .iter()
                .map(|l| {
                    l.iter()
                        .map(|(m, _)| self.decode_with(m, &limits))
                        .collect()
                })
                .collect();
            for (i, l) in lists.iter().enumerate() {
                if !l.is_empty() {
                    self.inputs[i].holding_since = None;
                }
            }
            // Whether each input, once empty, may be passed over (looked up once per merge).
            let mut passable: Vec<Option<bool>> = vec![None; n];
            let mut times: Vec<Option<Ts>> = vec![None; n];
            loop {
                for (i, t) in times.iter_mut().enumerate() {
                    *t = decoded[i].get(heads[i]).map(|d| match d {
                        Ok(ev) => ev.occurred_at,
                        Err(_) => Ts::MIN,
                    });
                }
                let i = match next(&times, |i| {
                    *passable[i].get_or_insert_with(|| {
                        let caught_up = self.caught_up(i, &restored);
                        may_pass(&mut self.inputs[i].holding_since, caught_up, now)
                    })
                }) {
                    Next::Input(i) => i,
                    Next::Held => {
                        held = true;
                        break;
                    }
                    Next::Done => break,
                };
                let (m, received) = &lists[i][heads[i]];
                let d = &decoded[i][heads[i]];
                if let Ok(ev) = d {
                    if self.hold_for_population(ev.occurred_at) {
                        break;
                    }
                }
                any_event |= d.is_ok();
                self.process(i, m, d, None, *received);
                heads[i] += 1;
            }
        }
        // What was not processed goes back, in order.
        let progressed = heads.iter().any(|&h| h > 0);
        for ((input, mut q), mut consumed) in self.inputs.iter_mut().zip(bufs.drain(..)).zip(heads)
        {
            while let Some(b) = q.front_mut() {
                let left = b.len() - *b.done();
                if consumed >= left {
                    consumed -= left;
                    q.pop_front();
                } else {
                    *b.done() += consumed;
                    break;
                }
            }
            input.buffered = q;
            input.counters.flush();
        }
        if progressed {
            self.after_batch(any_event);
        }
        Pulled {
            full: false,
            progressed,
            held,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order in which the merge processes inputs whose messages have these times, every
    /// input caught up once empty.
    fn order(inputs: &[&[Ts]]) -> Vec<(usize, Ts)> {
        let mut heads = vec![0; inputs.len()];
        let mut out = Vec::new();
        loop {
            let times: Vec<Option<Ts>> = inputs
                .iter()
                .zip(&heads)
                .map(|(l, &h)| l.get(h).copied())
                .collect();
            match next(&times, |_| true) {
                Next::Input(i) => {
                    out.push((i, inputs[i][heads[i]]));
                    heads[i] += 1;
                }
                Next::Held => unreachable!("every input may be passed"),
                Next::Done => return out,
            }
        }
    }

    #[test]
    fn inputs_merge_by_event_time_ties_to_the_first_listed() {
        assert_eq!(
            order(&[&[1, 4, 4, 9], &[2, 4, 5], &[0, 4]]),
            vec![
                (2, 0),
                (0, 1),
                (1, 2),
                (0, 4),
                (0, 4),
                (1, 4),
                (2, 4),
                (1, 5),
                (0, 9)
            ]
        );
    }

    #[test]
    fn a_dead_letter_goes_at_once() {
        // A head that is not an event has no time: it sorts before every event.
        assert_eq!(next(&[Some(5), Some(Ts::MIN)], |_| true), Next::Input(1));
    }

    #[test]
    fn an_empty_input_holds_the_others_until_it_may_be_passed() {
        assert_eq!(next(&[None, Some(3)], |_| false), Next::Held);
        assert_eq!(next(&[None, Some(3)], |_| true), Next::Input(1));
        assert_eq!(next(&[None, None], |_| true), Next::Done);
        assert_eq!(next(&[None, None], |i| i == 0), Next::Held);
        // Only empty inputs are asked.
        let mut asked = Vec::new();
        next(&[Some(1), None, Some(2)], |i| {
            asked.push(i);
            true
        });
        assert_eq!(asked, vec![1]);
    }

    #[test]
    fn an_input_not_caught_up_is_passed_over_after_the_wait() {
        let t0 = Instant::now();
        let mut since = None;
        assert!(!may_pass(&mut since, false, t0), "the wait starts");
        assert_eq!(since, Some(t0));
        assert!(!may_pass(&mut since, false, t0 + MAX_MERGE_WAIT / 2));
        assert!(may_pass(&mut since, false, t0 + MAX_MERGE_WAIT));
        // Caught up: passed at once, and the wait is over.
        assert!(may_pass(&mut since, true, t0 + MAX_MERGE_WAIT * 3));
        assert_eq!(since, None);
        assert!(
            !may_pass(&mut since, false, t0 + MAX_MERGE_WAIT * 3),
            "a new wait"
        );
    }
}
