//! JSON decoding: one borrowed parse into the flat raw record, then the shared validation.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::error::Category;

use serde::de::{IgnoredAny, MapAccess, Visitor};

use super::{AttrSource, AttrVal, ErrorCode, Event, Limits, RawEvent, Reject};

/// `attrs` as a short list of scalar values: read in one pass, looked up by name by the
/// type-specific checks. Nested values are kept only as a marker (never valid in the catalog).
#[derive(Default)]
struct JsonAttrs<'a>(Vec<(Cow<'a, str>, AttrVal<'a>)>);

/// A vector of attributes, empty: what [`JsonAttrs`] reuses between events.
type Scratch = Vec<(Cow<'static, str>, AttrVal<'static>)>;

thread_local! {
    /// The attribute vector of the last event decoded on this thread, emptied and kept for the
    /// next one, so a decode does not allocate (its contents borrowed from the input, it can
    /// only be kept while empty).
    static SCRATCH: std::cell::Cell<Scratch> = const { std::cell::Cell::new(Vec::new()) };
}

/// An empty vector with room, from this thread's scratch when there is one.
fn scratch<'a>() -> Vec<(Cow<'a, str>, AttrVal<'a>)> {
    let mut v = SCRATCH.with(|c| c.take());
    if v.capacity() == 0 {
        v.reserve(4);
    }
    v
}

/// Returns a vector to this thread's scratch. Emptied first, it holds nothing borrowed; collecting
/// its (no) elements into the `'static` element type reuses the allocation (same layout).
fn recycle(mut v: Vec<(Cow<'_, str>, AttrVal<'_>)>) {
    v.clear();
    let v: Scratch = v.into_iter().map(|_| unreachable!("emptied")).collect();
    SCRATCH.with(|c| c.set(v));
}

impl<'a> AttrSource<'a> for JsonAttrs<'a> {
    fn take(&mut self, name: &str) -> Option<AttrVal<'a>> {
        let i = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.swap_remove(i).1)
    }
}

/// A key, borrowed from the input unless it has escapes (serde's own `Cow` always copies).
struct KeySeed;

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct K;
        impl<'de> Visitor<'de> for K {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(K)
    }
}

struct ValueSeed;

impl<'de> serde::de::DeserializeSeed<'de> for ValueSeed {
    type Value = Option<AttrVal<'de>>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Option<AttrVal<'de>>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an attribute value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(AttrVal::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(AttrVal::Num(v as f64)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(AttrVal::Num(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(AttrVal::Num(v)))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(AttrVal::Str(Cow::Borrowed(v))))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(AttrVal::Str(Cow::Owned(v.to_string()))))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(AttrVal::Str(Cow::Owned(v))))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Some(AttrVal::Nested))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Some(AttrVal::Nested))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonAttrs<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = JsonAttrs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of attributes")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = scratch();
                while let Some(k) = map.next_key_seed(KeySeed)? {
                    if let Some(val) = map.next_value_seed(ValueSeed)? {
                        v.push((k, val));
                    }
                }
                Ok(JsonAttrs(v))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// An optional string, borrowed from the input unless it has escapes: serde's `borrow` does not
/// reach a `Cow` inside an `Option`, which would copy every field of every event.
fn opt_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct O;
    impl<'de> Visitor<'de> for O {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            serde::de::DeserializeSeed::deserialize(KeySeed, d).map(Some)
        }
    }
    d.deserialize_option(O)
}

/// The top-level fields as found (all optional here: the shared validation says what is
/// required).
#[derive(Default)]
struct JsonEvent<'a> {
    event_id: Option<Cow<'a, str>>,
    employee_id: Option<Cow<'a, str>>,
    occurred_at: Option<Cow<'a, str>>,
    kind: Option<Cow<'a, str>>,
    team_id: Option<Cow<'a, str>>,
    cohort_id: Option<Cow<'a, str>>,
    manager_id: Option<Cow<'a, str>>,
    attrs: Option<JsonAttrs<'a>>,
}

impl<'a> JsonEvent<'a> {
    /// Where a top-level string field goes (`None` for `attrs` and unknown fields).
    fn slot(&mut self, f: Field) -> Option<&mut Option<Cow<'a, str>>> {
        Some(match f {
            Field::EventId => &mut self.event_id,
            Field::EmployeeId => &mut self.employee_id,
            Field::OccurredAt => &mut self.occurred_at,
            Field::Kind => &mut self.kind,
            Field::TeamId => &mut self.team_id,
            Field::CohortId => &mut self.cohort_id,
            Field::ManagerId => &mut self.manager_id,
            Field::Attrs | Field::Other => return None,
        })
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    EventId,
    EmployeeId,
    OccurredAt,
    #[serde(rename = "type")]
    Kind,
    TeamId,
    CohortId,
    ManagerId,
    Attrs,
    #[serde(other)]
    Other,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::EventId => "event_id",
            Field::EmployeeId => "employee_id",
            Field::OccurredAt => "occurred_at",
            Field::Kind => "type",
            Field::TeamId => "team_id",
            Field::CohortId => "cohort_id",
            Field::ManagerId => "manager_id",
            Field::Attrs => "attrs",
            Field::Other => "",
        }
    }
}

/// Deserializes an event's object into a [`JsonEvent`] the caller holds: the ~200-byte record
/// is written in place instead of being returned through every layer of the parser (those
/// copies were an eighth of the decode's time).
struct InPlace<'e, 'a>(&'e mut JsonEvent<'a>);

impl<'de: 'a, 'a> serde::de::DeserializeSeed<'de> for InPlace<'_, 'a> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

/// A field value that is an optional string.
struct OptStr;

impl<'de> serde::de::DeserializeSeed<'de> for OptStr {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        opt_str(d)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for InPlace<'_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an event object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ev = self.0;
        // Fields seen, null ones included: a field given twice is an error.
        let mut seen = 0u16;
        while let Some(f) = map.next_key::<Field>()? {
            if f == Field::Other {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let bit = 1 << f as u16;
            if seen & bit != 0 {
                return Err(serde::de::Error::duplicate_field(f.name()));
            }
            seen |= bit;
            if f == Field::Attrs {
                ev.attrs = map.next_value()?;
            } else if let Some(slot) = ev.slot(f) {
                *slot = map.next_value_seed(OptStr)?;
            }
        }
        Ok(())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonEvent<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut ev = JsonEvent::default();
        serde::de::DeserializeSeed::deserialize(InPlace(&mut ev), d)?;
        Ok(ev)
    }
}

/// Decodes one JSON event. Syntax errors are `malformed_json`; well-formed JSON of the wrong
/// shape is a `schema_violation` whose detail names the field path.
pub fn decode_json<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Event<'a>, Reject> {
    decode_json_with(bytes, limits, true)
}

/// Whether the fast path reads `text` by itself.
#[cfg(test)]
pub(crate) fn fast_path_takes(text: &str) -> bool {
    let mut raw = JsonEvent::default();
    let took = fast::parse(text, &mut raw);
    if let Some(a) = raw.attrs.take() {
        recycle(a.0);
    }
    took
}

/// [`decode_json`] without its fast path: what the fast path must agree with.
#[cfg(test)]
pub(crate) fn decode_json_general<'a>(
    bytes: &'a [u8],
    limits: &Limits,
) -> Result<Event<'a>, Reject> {
    decode_json_with(bytes, limits, false)
}

fn decode_json_with<'a>(
    bytes: &'a [u8],
    limits: &Limits,
    try_fast: bool,
) -> Result<Event<'a>, Reject> {
    // JSON text is UTF-8 (RFC 8259 §8.1): checked once for the whole record, so the parser
    // need not check each string again.
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            return Err(Reject::new(
                ErrorCode::MalformedJson,
                format!("not UTF-8: invalid byte at offset {}", e.valid_up_to()),
            ))
        }
    };
    let mut raw = JsonEvent::default();
    if !(try_fast && fast::parse(text, &mut raw)) {
        // Outside the fast path's subset (or not JSON at all): serde_json decides, and names
        // the error.
        if let Some(a) = raw.attrs.take() {
            recycle(a.0);
        }
        raw = JsonEvent::default();
        let mut de = serde_json::Deserializer::from_str(text);
        if let Err(e) = serde::de::DeserializeSeed::deserialize(InPlace(&mut raw), &mut de)
            .and_then(|()| de.end())
        {
            if let Some(a) = raw.attrs.take() {
                recycle(a.0);
            }
            return Err(classify(bytes, e));
        }
    }
    let mut attrs = raw.attrs.unwrap_or_default();
    let ev = RawEvent {
        event_id: raw.event_id,
        employee_id: raw.employee_id,
        occurred_at: raw.occurred_at,
        kind: raw.kind,
        team_id: raw.team_id,
        cohort_id: raw.cohort_id,
        manager_id: raw.manager_id,
        attrs: &mut attrs,
    }
    .validate(limits);
    recycle(attrs.0);
    ev
}

/// The fast path: the shape nearly every event has — one flat object of strings without
/// escapes, `null`s and at most one `attrs` object of scalars — read with a plain byte scan
/// instead of serde's visitors (about three times faster). Anything else (an escape, a control
/// character, a nested value, a duplicate field, a syntax error, trailing characters) makes it
/// give up, and the general path decodes the text from the start: both give the same result
/// for any input (a property test checks it), the fast one just for less.
mod fast {
    use super::{scratch, Field, JsonAttrs, JsonEvent};
    use crate::event::AttrVal;
    use std::borrow::Cow;

    struct Cur<'a> {
        s: &'a str,
        i: usize,
    }

    impl<'a> Cur<'a> {
        fn byte(&self) -> Option<u8> {
            self.s.as_bytes().get(self.i).copied()
        }

        /// Skips JSON whitespace; the next byte.
        fn peek(&mut self) -> Option<u8> {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.byte() {
                self.i += 1;
            }
            self.byte()
        }

        fn eat(&mut self, c: u8) -> bool {
            let hit = self.peek() == Some(c);
            if hit {
                self.i += 1;
            }
            hit
        }

        fn word(&mut self, w: &str) -> bool {
            let hit = self.s.as_bytes()[self.i..].starts_with(w.as_bytes());
            if hit {
                self.i += w.len();
            }
            hit
        }

        /// A string at the cursor without escapes or control characters (`None` otherwise).
        fn str(&mut self) -> Option<&'a str> {
            if self.peek() != Some(b'"') {
                return None;
            }
            let start = self.i + 1;
            let rest = self.s.as_bytes().get(start..)?;
            let n = stop(rest)?;
            if rest[n] != b'"' {
                return None;
            }
            self.i = start + n + 1;
            // Both ends are next to ASCII quotes: character boundaries.
            self.s.get(start..start + n)
        }

        /// A number as serde_json reads it into an attribute (`None`: not a JSON number, or
        /// one the general path should read).
        fn number(&mut self) -> Option<f64> {
            let b = self.s.as_bytes();
            let start = self.i;
            let mut j = start;
            let neg = b.get(j) == Some(&b'-');
            j += neg as usize;
            let digits = |j: &mut usize| {
                let from = *j;
                while let Some(b'0'..=b'9') = b.get(*j) {
                    *j += 1;
                }
                *j - from
            };
            let int_start = j;
            match b.get(j) {
                Some(b'0') => j += 1,
                Some(b'1'..=b'9') => {
                    digits(&mut j);
                }
                _ => return None,
            }
            let int_end = j;
            let mut integer = true;
            if b.get(j) == Some(&b'.') {
                j += 1;
                if digits(&mut j) == 0 {
                    return None;
                }
                integer = false;
            }
            if let Some(b'e' | b'E') = b.get(j) {
                j += 1;
                if let Some(b'+' | b'-') = b.get(j) {
                    j += 1;
                }
                if digits(&mut j) == 0 {
                    return None;
                }
                integer = false;
            }
            self.i = j;
            if integer && int_end - int_start <= 18 {
                // What serde_json hands the visitor (a u64 or i64), converted as it is.
                let v = b[int_start..int_end]
                    .iter()
                    .fold(0i64, |v, &c| v * 10 + (c - b'0') as i64);
                return Some(if neg { (-v) as f64 } else { v as f64 });
            }
            // Fractions, exponents, long integers: serde_json's own reading of the number.
            serde_json::from_str::<f64>(&self.s[start..j]).ok()
        }

        /// A scalar of a field nobody reads: checked, dropped.
        fn skip_scalar(&mut self) -> Option<()> {
            match self.peek()? {
                b'"' => self.str().map(drop),
                b't' => self.word("true").then_some(()),
                b'f' => self.word("false").then_some(()),
                b'n' => self.word("null").then_some(()),
                _ => self.number().map(drop),
            }
        }

        /// An attribute value: `None` for null (dropped, as the general path does).
        fn attr(&mut self) -> Option<Option<AttrVal<'a>>> {
            Some(match self.peek()? {
                b'"' => Some(AttrVal::Str(Cow::Borrowed(self.str()?))),
                b't' if self.word("true") => Some(AttrVal::Bool(true)),
                b'f' if self.word("false") => Some(AttrVal::Bool(false)),
                b'n' if self.word("null") => None,
                b'-' | b'0'..=b'9' => Some(AttrVal::Num(self.number()?)),
                _ => return None,
            })
        }

        fn attrs(&mut self, into: &mut Vec<(Cow<'a, str>, AttrVal<'a>)>) -> Option<()> {
            if self.eat(b'}') {
                return Some(());
            }
            loop {
                let k = self.str()?;
                if !self.eat(b':') {
                    return None;
                }
                if let Some(v) = self.attr()? {
                    into.push((Cow::Borrowed(k), v));
                }
                if self.eat(b',') {
                    continue;
                }
                return self.eat(b'}').then_some(());
            }
        }

        fn event(&mut self, ev: &mut JsonEvent<'a>) -> Option<()> {
            if !self.eat(b'{') {
                return None;
            }
            if self.eat(b'}') {
                return self.end();
            }
            let mut seen = 0u16;
            loop {
                let f = field(self.str()?);
                if !self.eat(b':') {
                    return None;
                }
                if f != Field::Other {
                    let bit = 1 << f as u16;
                    if seen & bit != 0 {
                        return None;
                    }
                    seen |= bit;
                }
                match f {
                    Field::Attrs => {
                        if self.peek() == Some(b'n') {
                            if !self.word("null") {
                                return None;
                            }
                        } else {
                            if !self.eat(b'{') {
                                return None;
                            }
                            // Held by the event from here, so given back if this fails.
                            let attrs = ev.attrs.insert(JsonAttrs(scratch()));
                            self.attrs(&mut attrs.0)?;
                        }
                    }
                    Field::Other => self.skip_scalar()?,
                    _ => {
                        let v = match self.peek()? {
                            b'"' => Some(Cow::Borrowed(self.str()?)),
                            b'n' if self.word("null") => None,
                            _ => return None,
                        };
                        *ev.slot(f)? = v;
                    }
                }
                if self.eat(b',') {
                    continue;
                }
                if !self.eat(b'}') {
                    return None;
                }
                return self.end();
            }
        }

        /// Only whitespace may follow the event.
        fn end(&mut self) -> Option<()> {
            self.peek().is_none().then_some(())
        }
    }

    /// Where a string's plain run ends: the first quote, backslash or control character, eight
    /// bytes at a time (the lowest flagged byte of a word is exact; flags above it may not be).
    fn stop(b: &[u8]) -> Option<usize> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let zero = |v: u64| v.wrapping_sub(ONES) & !v;
        let mut i = 0;
        while let Some(w) = b.get(i..i + 8) {
            let x = u64::from_le_bytes(w.try_into().ok()?);
            let hit = (zero(x ^ (ONES * b'"' as u64))
                | zero(x ^ (ONES * b'\\' as u64))
                | (x.wrapping_sub(ONES * 0x20) & !x))
                & HIGH;
            if hit != 0 {
                return Some(i + (hit.trailing_zeros() / 8) as usize);
            }
            i += 8;
        }
        let tail = b.get(i..)?;
        tail.iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            .map(|p| i + p)
    }

    fn field(key: &str) -> Field {
        match key {
            "event_id" => Field::EventId,
            "employee_id" => Field::EmployeeId,
            "occurred_at" => Field::OccurredAt,
            "type" => Field::Kind,
            "team_id" => Field::TeamId,
            "cohort_id" => Field::CohortId,
            "manager_id" => Field::ManagerId,
            "attrs" => Field::Attrs,
            _ => Field::Other,
        }
    }

    #[cfg(test)]
    mod tests {
        use proptest::prelude::*;

        proptest! {
            /// The word-at-a-time scan finds what a byte-at-a-time one finds.
            #[test]
            fn stop_finds_the_first_quote_backslash_or_control_character(
                b in prop::collection::vec(
                    prop_oneof![4 => 0x20u8..0x7f, 1 => any::<u8>(), 1 => Just(b'"'), 1 => Just(b'\\')],
                    0..40,
                )
            ) {
                let naive = b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
                prop_assert_eq!(super::stop(&b), naive);
            }
        }
    }

    /// Reads `text` into `ev` if it is in the fast path's subset; false otherwise (then `ev`
    /// may hold part of it: start again from an empty one).
    pub(super) fn parse<'a>(text: &'a str, ev: &mut JsonEvent<'a>) -> bool {
        Cur { s: text, i: 0 }.event(ev).is_some()
    }
}

fn classify(bytes: &[u8], e: serde_json::Error) -> Reject {
    match e.classify() {
        Category::Data => {
            // Only on the error path: parse again, tracking the path, to name the field.
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let path = match serde_path_to_error::deserialize::<_, JsonEvent<'_>>(&mut de) {
                Err(pe) => pe.path().to_string(),
                Ok(_) => String::from("."),
            };
            let msg = strip_position(&e.to_string());
            let detail = if path == "." || path.is_empty() {
                msg
            } else {
                format!("{path}: {msg}")
            };
            Reject::new(ErrorCode::SchemaViolation, detail)
        }
        Category::Syntax | Category::Eof | Category::Io => {
            Reject::new(ErrorCode::MalformedJson, e.to_string())
        }
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Encodes a typed event as one JSON line (no newline): the simulator's, tests' and benches'
/// writer, and the inverse of [`decode_json`].
pub fn encode_json(ev: &Event<'_>) -> String {
    use serde_json::{Map, Value};
    let p = super::proto::to_pb(ev);
    let a = p.attrs.unwrap_or_default();
    let mut attrs = Map::new();
    macro_rules! put {
        ($($f:ident),*) => { $( if let Some(v) = a.$f { attrs.insert(stringify!($f).into(), Value::from(v)); } )* };
    }
    put!(
        task_id,
        channel,
        module_id,
        progress_pct,
        before_assessment,
        score_pct,
        passed,
        query,
        results_clicked,
        checkin_id,
        due_at,
        goal_id,
        progress_delta_pct,
        feedback_id,
        posting_id,
        change,
        plan_id,
        assessment_id,
        messages,
        meetings,
        completed,
        planned,
        points_done,
        points_target,
        survey_id,
        score,
        word_count,
        text,
        individual_processing,
        voluntary,
        trigger_id,
        time_off_id,
        starts_on,
        ends_on
    );
    let mut m = Map::new();
    m.insert("event_id".into(), p.event_id.into());
    m.insert("employee_id".into(), p.employee_id.into());
    m.insert("occurred_at".into(), p.occurred_at.into());
    m.insert("type".into(), p.r#type.into());
    for (k, v) in [
        ("team_id", p.team_id),
        ("cohort_id", p.cohort_id),
        ("manager_id", p.manager_id),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), v.into());
        }
    }
    if !attrs.is_empty() {
        m.insert("attrs".into(), Value::Object(attrs));
    }
    Value::Object(m).to_string()
}
