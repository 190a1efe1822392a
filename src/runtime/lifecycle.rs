//! The consumer's lifecycle as an explicit state machine (after getsentry/taskbroker): the
//! consumer thread feeds it what happened and carries out the actions it returns, so every
//! path — assignment, revocation, shutdown in any phase — is written down once and tested
//! without a broker.

use std::collections::BTreeSet;

/// An input partition: (topic, partition).
pub type Tp = (String, i32);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Subscribed, nothing assigned yet (or everything revoked): not ready.
    Waiting,
    /// Partitions assigned, their tasks running: ready.
    Consuming(BTreeSet<Tp>),
    /// Shutdown asked for: no more fetching; the tasks drain, offsets are committed.
    Stopping,
    /// Everything drained and committed: the consumer may close.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Assigned(Vec<Tp>),
    Revoked(Vec<Tp>),
    Shutdown,
    /// The drain of [`Action::DrainAll`] finished (or hit its deadline).
    Drained,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a processing task per partition.
    Start(Vec<Tp>),
    /// Finish in-flight work of these partitions (deadline below the session timeout), commit
    /// what is acknowledged synchronously, and drop their tasks and state.
    Drain(Vec<Tp>),
    /// Stop fetching; drain every task and commit synchronously; then report `Drained`.
    DrainAll,
    /// Leave the group and close the consumer.
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    pub phase: Phase,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            phase: Phase::Waiting,
        }
    }
}

impl Lifecycle {
    /// `/readyz`: partitions are assigned and their tasks run.
    pub fn ready(&self) -> bool {
        matches!(&self.phase, Phase::Consuming(tps) if !tps.is_empty())
    }

    pub fn assigned(&self) -> usize {
        match &self.phase {
            Phase::Consuming(tps) => tps.len(),
            _ => 0,
        }
    }

    /// Whether the consumer should keep fetching.
    pub fn fetching(&self) -> bool {
        matches!(self.phase, Phase::Waiting | Phase::Consuming(_))
    }

    pub fn step(&mut self, input: Input) -> Vec<Action> {
        let phase = std::mem::replace(&mut self.phase, Phase::Stopped);
        let (next, actions) = match (phase, input) {
            (Phase::Waiting, Input::Assigned(tps)) => {
                let set: BTreeSet<Tp> = tps.iter().cloned().collect();
                (Phase::Consuming(set), vec![Action::Start(tps)])
            }
            (Phase::Consuming(mut set), Input::Assigned(tps)) => {
                // Incremental assignment adds; an eager one repeats what is running.
                let new: Vec<Tp> = tps
                    .into_iter()
                    .filter(|tp| set.insert(tp.clone()))
                    .collect();
                let actions = if new.is_empty() {
                    vec![]
                } else {
                    vec![Action::Start(new)]
                };
                (Phase::Consuming(set), actions)
            }
            (Phase::Consuming(mut set), Input::Revoked(tps)) => {
                let gone: Vec<Tp> = tps.into_iter().filter(|tp| set.remove(tp)).collect();
                let actions = if gone.is_empty() {
                    vec![]
                } else {
                    vec![Action::Drain(gone)]
                };
                let next = if set.is_empty() {
                    Phase::Waiting
                } else {
                    Phase::Consuming(set)
                };
                (next, actions)
            }
            (Phase::Waiting, Input::Revoked(_)) => (Phase::Waiting, vec![]),
            (Phase::Waiting | Phase::Consuming(_), Input::Shutdown) => {
                (Phase::Stopping, vec![Action::DrainAll])
            }
            // While stopping, the group may still move partitions: nothing new starts, and
            // what is revoked was drained by DrainAll already.
            (Phase::Stopping, Input::Assigned(_) | Input::Revoked(_) | Input::Shutdown) => {
                (Phase::Stopping, vec![])
            }
            (Phase::Stopping, Input::Drained) => (Phase::Stopped, vec![Action::Close]),
            (Phase::Stopped, _) => (Phase::Stopped, vec![]),
            (p @ (Phase::Waiting | Phase::Consuming(_)), Input::Drained) => (p, vec![]),
        };
        self.phase = next;
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        ("hr.interactions".into(), p)
    }

    #[test]
    fn ready_only_once_partitions_are_assigned() {
        let mut l = Lifecycle::default();
        assert!(!l.ready() && l.fetching());
        assert_eq!(
            l.step(Input::Assigned(vec![tp(0), tp(1)])),
            vec![Action::Start(vec![tp(0), tp(1)])]
        );
        assert!(l.ready());
        assert_eq!(l.assigned(), 2);
    }

    #[test]
    fn revoking_drains_only_the_revoked_partitions() {
        let mut l = Lifecycle::default();
        l.step(Input::Assigned(vec![tp(0), tp(1)]));
        assert_eq!(
            l.step(Input::Revoked(vec![tp(1), tp(7)])),
            vec![Action::Drain(vec![tp(1)])],
            "a partition never assigned is not drained"
        );
        assert!(l.ready());
        assert_eq!(
            l.step(Input::Revoked(vec![tp(0)])),
            vec![Action::Drain(vec![tp(0)])]
        );
        assert!(!l.ready(), "nothing assigned: not ready");
        assert_eq!(l.phase, Phase::Waiting);
    }

    #[test]
    fn a_repeated_assignment_starts_nothing_twice() {
        let mut l = Lifecycle::default();
        l.step(Input::Assigned(vec![tp(0)]));
        assert_eq!(
            l.step(Input::Assigned(vec![tp(0), tp(2)])),
            vec![Action::Start(vec![tp(2)])]
        );
    }

    #[test]
    fn shutdown_drains_everything_then_closes() {
        let mut l = Lifecycle::default();
        l.step(Input::Assigned(vec![tp(0)]));
        assert_eq!(l.step(Input::Shutdown), vec![Action::DrainAll]);
        assert!(!l.ready() && !l.fetching());
        assert_eq!(
            l.step(Input::Assigned(vec![tp(3)])),
            vec![],
            "nothing starts while stopping"
        );
        assert_eq!(l.step(Input::Revoked(vec![tp(0)])), vec![]);
        assert_eq!(
            l.step(Input::Shutdown),
            vec![],
            "a second request changes nothing"
        );
        assert_eq!(l.step(Input::Drained), vec![Action::Close]);
        assert_eq!(l.phase, Phase::Stopped);
        assert_eq!(l.step(Input::Assigned(vec![tp(0)])), vec![]);
    }

    #[test]
    fn shutdown_before_any_assignment_still_drains_and_closes() {
        let mut l = Lifecycle::default();
        assert_eq!(l.step(Input::Shutdown), vec![Action::DrainAll]);
        assert_eq!(l.step(Input::Drained), vec![Action::Close]);
    }
}
