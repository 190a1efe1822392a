//! momentd: reads HR and L&D interaction events, keeps windowed state per employee, detects the
//! small moments where people get stuck, and publishes explainable intervention triggers.
//!
//! The shape is a pure core inside a thin I/O shell: [`engine`] and [`rules`] never touch a
//! clock, a socket or a file; [`replay`] and (later) the Kafka runtime move bytes and time.

pub mod calendar;
pub mod catalog;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod event;
/// The fuzz targets' harnesses (`fuzz/`, `tests/fuzz_corpus.rs`): not part of the library's
/// interface, only with the `fuzzing` feature.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod http;
pub(crate) mod index;
pub mod metrics;
pub mod replay;
pub mod rules;
pub mod runtime;
/// The workforce simulator behind `momentd simulate` and `evaluate`: with the `simulator`
/// feature (on by default, so the one binary has it).
#[cfg(any(test, feature = "simulator"))]
pub mod sim;
pub mod synth;
pub mod time;
pub mod trigger;

pub use engine::{Engine, EngineOptions, Outcome, Output, Pseudonymizer};
pub use event::{decode, Encoding, ErrorCode, Event, Kind, Limits, Reject};
pub use trigger::Trigger;

/// The pseudonymizer the settings ask for: `None` when pseudonymization is off; an error when it
/// is on and `MOMENTD_PSEUDONYM_KEY` is missing or empty.
pub fn pseudonymizer_from_env(
    s: &config::Settings,
) -> Result<Option<Pseudonymizer>, config::ConfigError> {
    if !s.privacy.pseudonymize {
        return Ok(None);
    }
    match std::env::var(config::PSEUDONYM_KEY_ENV) {
        Ok(k) if !k.is_empty() => Ok(Some(Pseudonymizer::new(k.as_bytes()))),
        _ => Err(config::ConfigError::Invalid {
            key: "privacy.pseudonymize".into(),
            msg: format!(
                "is true, but the environment variable {} is not set",
                config::PSEUDONYM_KEY_ENV
            ),
        }),
    }
}

/// The input limits of the settings (`replay` has no wall clock).
pub fn limits_from(s: &config::Settings, now: Option<time::Ts>) -> Limits {
    Limits {
        max_event_bytes: s.input.max_event_bytes,
        now,
        max_future: time::DAY,
    }
}
