use std::borrow::Cow;

use proptest::prelude::*;

use super::*;

fn limits() -> Limits {
    Limits::default()
}

fn reject(line: &str) -> Reject {
    decode_json(line.as_bytes(), &limits()).expect_err("should be rejected")
}

const BASE: &str =
    r#""event_id":"e1","employee_id":"emp-1","occurred_at":"2026-03-02T09:00:00+01:00""#;

#[test]
fn json_event_decodes_into_typed_event() {
    let line = format!(
        r#"{{{BASE},"type":"collab.activity","team_id":"t1","attrs":{{"messages":12,"meetings":3,"extra":"ignored"}}}}"#
    );
    let ev = decode_json(line.as_bytes(), &limits()).unwrap();
    assert_eq!(ev.employee_id, "emp-1");
    assert_eq!(
        ev.occurred_at,
        time::parse_rfc3339("2026-03-02T08:00:00Z").unwrap()
    );
    assert_eq!(ev.team_id.as_deref(), Some("t1"));
    assert_eq!(
        ev.kind,
        Kind::CollabActivity {
            messages: 12,
            meetings: 3
        }
    );
}

#[test]
fn invalid_utf8_anywhere_is_malformed_json_with_its_offset() {
    // Even inside an attribute momentd ignores: JSON text is UTF-8.
    let line = format!(
        r#"{{{BASE},"type":"collab.activity","attrs":{{"messages":1,"meetings":0,"note":"caf"#
    );
    let mut bytes = line.into_bytes();
    let at = bytes.len();
    bytes.extend_from_slice(b"\xE9\"}}");
    let r = decode_json(&bytes, &limits()).expect_err("should be rejected");
    assert_eq!(r.code, ErrorCode::MalformedJson);
    assert!(r.detail.contains(&format!("offset {at}")), "{}", r.detail);
}

#[test]
fn attribute_vectors_are_reused_without_leaking_one_event_into_the_next() {
    let a = format!(
        r#"{{{BASE},"type":"collab.activity","attrs":{{"messages":5,"meetings":1,"x":1,"y":2,"z":3}}}}"#
    );
    let b = format!(r#"{{{BASE},"type":"collab.activity","attrs":{{"meetings":2}}}}"#);
    assert!(decode_json(a.as_bytes(), &limits()).is_ok());
    // `messages` of the first event must not be seen by the second.
    let r = decode_json(b.as_bytes(), &limits()).expect_err("messages is missing");
    assert_eq!(r.detail, "attrs.messages: required integer >= 0");
}

#[test]
fn malformed_json_is_malformed_json() {
    assert_eq!(reject(r#"{"event_id": "#).code, ErrorCode::MalformedJson);
    assert_eq!(reject("not json").code, ErrorCode::MalformedJson);
}

#[test]
fn wrong_shapes_are_schema_violations_naming_the_field() {
    let r = reject(&format!(
        r#"{{{BASE},"type":"collab.activity","attrs":{{"messages":3.5,"meetings":1}}}}"#
    ));
    assert_eq!(r.code, ErrorCode::SchemaViolation);
    assert!(r.detail.contains("attrs.messages"), "{}", r.detail);

    let r = reject(&format!(
        r#"{{{BASE},"type":"collab.activity","attrs":{{"messages":"many","meetings":1}}}}"#
    ));
    assert_eq!(r.code, ErrorCode::SchemaViolation);
    assert!(r.detail.starts_with("attrs.messages"), "{}", r.detail);

    let r = reject(
        r#"{"employee_id":"e","occurred_at":"2026-03-02T09:00:00Z","type":"recognition.given"}"#,
    );
    assert_eq!(
        (r.code, r.detail.as_str()),
        (ErrorCode::SchemaViolation, "event_id: required")
    );

    let r = reject(&format!(
        r#"{{{BASE},"type":"learning.module_abandoned","attrs":{{"module_id":"m","progress_pct":120,"before_assessment":true}}}}"#
    ));
    assert!(r.detail.contains("attrs.progress_pct"), "{}", r.detail);

    let r = reject(&format!(
        r#"{{{BASE},"type":"checkin.scheduled","attrs":{{"checkin_id":"c"}}}}"#
    ));
    assert_eq!(r.detail, "attrs.due_at: required");

    let r = reject(r#"[1,2,3]"#);
    assert_eq!(r.code, ErrorCode::SchemaViolation);
    // An array is not an event, even one whose items would fill the fields in order.
    let r = reject(r#"["a","e","2026-03-02T09:00:00Z","recognition.given",null,null,null,null]"#);
    assert_eq!(
        (r.code, r.detail.as_str()),
        (
            ErrorCode::SchemaViolation,
            "invalid type: sequence, expected an event object"
        )
    );

    let r = reject(&format!(
        r#"{{{BASE},"type":"recognition.given","type":"x"}}"#
    ));
    assert_eq!(
        (r.code, r.detail.as_str()),
        (ErrorCode::SchemaViolation, "duplicate field `type`")
    );

    let long = "x".repeat(129);
    let r = reject(&format!(
        r#"{{"event_id":"{long}","employee_id":"e","occurred_at":"2026-03-02T09:00:00Z","type":"recognition.given"}}"#
    ));
    assert!(
        r.detail.starts_with("event_id: 129 characters"),
        "{}",
        r.detail
    );

    let r = reject(
        r#"{"event_id":"a","employee_id":"e","occurred_at":"2026-03-02 09:00","type":"recognition.given"}"#,
    );
    assert!(
        r.detail.starts_with("occurred_at: not an RFC 3339"),
        "{}",
        r.detail
    );
}

#[test]
fn unknown_type_is_unknown_type() {
    let r = reject(&format!(r#"{{{BASE},"type":"coffee.break"}}"#));
    assert_eq!(r.code, ErrorCode::UnknownType);
    assert!(r.detail.contains("coffee.break"));
}

#[test]
fn timestamps_before_2000_or_far_ahead_are_out_of_range() {
    let r = reject(
        r#"{"event_id":"a","employee_id":"e","occurred_at":"1999-12-31T23:59:59Z","type":"recognition.given"}"#,
    );
    assert_eq!(r.code, ErrorCode::TimestampOutOfRange);
    let now = time::parse_rfc3339("2026-03-01T00:00:00Z").unwrap();
    let l = Limits {
        now: Some(now),
        ..limits()
    };
    let ahead = br#"{"event_id":"a","employee_id":"e","occurred_at":"2026-03-02T00:00:01Z","type":"recognition.given"}"#;
    assert_eq!(
        decode_json(ahead, &l).unwrap_err().code,
        ErrorCode::TimestampOutOfRange
    );
    let within = br#"{"event_id":"a","employee_id":"e","occurred_at":"2026-03-01T23:59:59Z","type":"recognition.given"}"#;
    assert!(decode_json(within, &l).is_ok());
    assert!(
        decode_json(ahead, &limits()).is_ok(),
        "replay has no wall clock"
    );
}

#[test]
fn oversized_and_key_mismatch() {
    let line = format!(
        r#"{{{BASE},"type":"feedback.comment","attrs":{{"text":"{}"}}}}"#,
        "w ".repeat(40_000)
    );
    let r = decode(line.as_bytes(), Encoding::Json, None, &limits()).unwrap_err();
    assert_eq!(r.code, ErrorCode::TooLarge);
    let line = format!(r#"{{{BASE},"type":"recognition.given"}}"#);
    let r = decode(line.as_bytes(), Encoding::Json, Some(b"emp-2"), &limits()).unwrap_err();
    assert_eq!(r.code, ErrorCode::KeyMismatch);
    assert!(decode(line.as_bytes(), Encoding::Json, Some(b"emp-1"), &limits()).is_ok());
}

#[test]
fn malformed_protobuf_is_malformed_protobuf() {
    let r = decode_protobuf(&[0x0a, 0xff, 0xff], &limits()).unwrap_err();
    assert_eq!(r.code, ErrorCode::MalformedProtobuf);
}

#[test]
fn pulse_word_count_comes_from_text_when_absent() {
    let line = format!(
        r#"{{{BASE},"type":"survey.pulse_response","attrs":{{"survey_id":"s","score":7,"text":"fine, a  bit busy"}}}}"#
    );
    let ev = decode_json(line.as_bytes(), &limits()).unwrap();
    assert_eq!(
        ev.kind,
        Kind::PulseResponse {
            survey_id: Cow::Borrowed("s"),
            score: Some(7.0),
            word_count: Some(4)
        }
    );
}

#[test]
fn content_type_header_selects_encoding() {
    assert_eq!(
        Encoding::from_content_type(b"application/json; charset=utf-8"),
        Some(Encoding::Json)
    );
    assert_eq!(
        Encoding::from_content_type(b"application/x-protobuf"),
        Some(Encoding::Protobuf)
    );
    assert_eq!(Encoding::from_content_type(b"text/plain"), None);
}

// --- property tests ---------------------------------------------------------------------------

fn id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_\\-é ]{1,20}"
}

fn kind() -> impl Strategy<Value = Kind<'static>> {
    let s = || id().prop_map(Cow::Owned);
    let n = || 0u32..100_000;
    let pct = || (0u32..=100).prop_map(|v| v as f64);
    let due = (946_684_800_000i64..4_000_000_000_000).prop_map(|t| t - t % 1000);
    prop_oneof![
        s().prop_map(|task_id| Kind::TaskStarted { task_id }),
        Just(Kind::ClarificationRequested),
        (s(), pct(), any::<bool>()).prop_map(|(module_id, progress_pct, before_assessment)| {
            Kind::ModuleAbandoned {
                module_id,
                progress_pct,
                before_assessment,
            }
        }),
        (s(), pct(), any::<bool>()).prop_map(|(module_id, score_pct, passed)| {
            Kind::AssessmentCompleted {
                module_id,
                score_pct,
                passed,
            }
        }),
        n().prop_map(|results_clicked| Kind::ContentSearched { results_clicked }),
        (s(), due).prop_map(|(checkin_id, due_at)| Kind::CheckinScheduled { checkin_id, due_at }),
        s().prop_map(|checkin_id| Kind::CheckinSkipped { checkin_id }),
        (s(), -1000i32..1000).prop_map(|(goal_id, d)| Kind::GoalUpdated {
            goal_id,
            progress_delta_pct: d as f64 / 4.0
        }),
        any::<bool>().prop_map(|promotion| Kind::RoleChanged { promotion }),
        (n(), n()).prop_map(|(messages, meetings)| Kind::CollabActivity { messages, meetings }),
        (n(), n()).prop_map(|(completed, planned)| Kind::WorkTasks { completed, planned }),
        (0u32..1000, 0u32..1000).prop_map(|(a, b)| Kind::SprintClosed {
            points_done: a as f64,
            points_target: b as f64
        }),
        (
            s(),
            proptest::option::of(0u32..=10),
            proptest::option::of(0u32..500)
        )
            .prop_map(|(survey_id, score, word_count)| Kind::PulseResponse {
                survey_id,
                score: score.map(|v| v as f64),
                word_count
            }),
        s().prop_map(|text| Kind::FeedbackComment { text }),
        any::<bool>().prop_map(|individual_processing| Kind::ConsentUpdated {
            individual_processing
        }),
        Just(Kind::Erased),
        any::<bool>().prop_map(|voluntary| Kind::Exited { voluntary }),
        s().prop_map(|trigger_id| Kind::InterventionIgnored { trigger_id }),
    ]
}

fn event() -> impl Strategy<Value = Event<'static>> {
    (
        id(),
        id(),
        946_684_800_000i64..4_000_000_000_000,
        proptest::option::of(id()),
        kind(),
    )
        .prop_map(|(event_id, employee_id, t, team, kind)| Event {
            event_id: Cow::Owned(event_id),
            employee_id: Cow::Owned(employee_id),
            occurred_at: t,
            team_id: team.map(Cow::Owned),
            cohort_id: None,
            manager_id: None,
            kind,
        })
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,12}".prop_map(Value::from),
        prop::sample::select(Kind::TYPE_NAMES).prop_map(Value::from),
        Just(Value::from("2026-03-02T09:00:00Z")),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        let keys = prop::sample::select(vec![
            "event_id",
            "employee_id",
            "occurred_at",
            "type",
            "attrs",
            "team_id",
            "messages",
            "meetings",
            "module_id",
            "progress_pct",
            "before_assessment",
            "due_at",
            "checkin_id",
            "text",
            "score",
            "x",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(keys, inner, 0..8).prop_map(|m| serde_json::Value::Object(
                m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn both_encodings_decode_to_the_same_typed_event(ev in event()) {
        let j = encode_json(&ev);
        let from_json = decode_json(j.as_bytes(), &limits()).map(|e| e.into_owned());
        let p = encode_protobuf(&ev);
        let from_pb = decode_protobuf(&p, &limits());
        prop_assert_eq!(&from_json, &Ok(ev.clone()));
        prop_assert_eq!(from_pb, Ok(ev));
    }

    #[test]
    fn arbitrary_bytes_never_panic_either_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, Encoding::Json, Some(b"k"), &limits());
        let _ = decode(&bytes, Encoding::Protobuf, Some(b"k"), &limits());
    }

    #[test]
    fn arbitrary_json_never_panics_and_rejections_name_a_code(v in json_value()) {
        let s = v.to_string();
        match decode_json(s.as_bytes(), &limits()) {
            Ok(_) => {}
            Err(r) => prop_assert!(!r.detail.is_empty()),
        }
        let _ = decode_protobuf(s.as_bytes(), &limits());
    }

    #[test]
    fn mutated_valid_events_never_panic(ev in event(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut j = encode_json(&ev).into_bytes();
        let i = pos.index(j.len());
        j[i] = byte;
        let _ = decode_json(&j, &limits());
        let mut p = encode_protobuf(&ev);
        if !p.is_empty() {
            let i = pos.index(p.len());
            p[i] = byte;
        }
        let _ = decode_protobuf(&p, &limits());
    }
}

#[test]
fn json_strings_without_escapes_are_borrowed_not_copied() {
    use std::borrow::Cow;
    let line = br#"{"event_id":"e-1","employee_id":"emp-1","occurred_at":"2026-03-01T10:00:00Z","type":"learning.module_started","team_id":"t-1","attrs":{"module_id":"m-1"}}"#;
    let ev = decode_json(line, &Limits::default()).unwrap();
    assert!(matches!(ev.event_id, Cow::Borrowed(_)));
    assert!(matches!(ev.employee_id, Cow::Borrowed(_)));
    assert!(matches!(ev.team_id, Some(Cow::Borrowed(_))));
    let escaped = br#"{"event_id":"e-\u0031","employee_id":"emp-1","occurred_at":"2026-03-01T10:00:00Z","type":"learning.module_started","attrs":{"module_id":"m-1"}}"#;
    let ev = decode_json(escaped, &Limits::default()).unwrap();
    assert_eq!(
        ev.event_id, "e-1",
        "an escaped string is decoded (and owned)"
    );
}

/// JSON texts around the fast path's edges: flat objects whose keys and values are drawn from
/// literals the fast path takes (plain strings, null, integers, booleans) and ones it must
/// leave to the general path (escapes, control characters, fractions, exponents, long or
/// malformed numbers, nested values, duplicates), with whitespace anywhere and sometimes
/// trailing text.
fn json_text() -> impl Strategy<Value = String> {
    let value = prop::sample::select(vec![
        r#""x""#,
        r#""a\"b""#,
        r#""\u0041bc""#,
        "\"tab\there\"",
        r#""2026-03-02T09:00:00Z""#,
        r#""learning.module_started""#,
        r#""checkin.scheduled""#,
        r#""emp-1""#,
        r#""""#,
        "null",
        "true",
        "false",
        "nul",
        "0",
        "-0",
        "12",
        "-12",
        "007",
        "1.5",
        "-0.0",
        "1.",
        ".5",
        "1e3",
        "-1E-2",
        "2.5e+1",
        "12345678901234567",
        "123456789012345678",
        "1234567890123456789",
        "-9223372036854775808",
        "18446744073709551616",
        "1e400",
        "-",
        "-01",
        "1e",
        "1e+",
        "+1",
        "0x1",
        "NaN",
        "[1]",
        "[]",
        "{}",
        r#"{"a":1}"#,
    ]);
    let key = prop::sample::select(vec![
        "event_id",
        "employee_id",
        "occurred_at",
        "type",
        "team_id",
        "cohort_id",
        "manager_id",
        "module_id",
        "checkin_id",
        "due_at",
        "messages",
        "meetings",
        "score",
        "x",
        "typ\\u0065",
        "",
    ]);
    let ws = prop::sample::select(vec!["", "", "", " ", "\n\t ", "\r"]);
    let member = (
        ws.clone(),
        key.clone(),
        ws.clone(),
        value.clone(),
        ws.clone(),
    )
        .prop_map(|(a, k, b, v, c)| format!("{a}\"{k}\"{b}:{c}{v}"));
    let attrs = prop::collection::vec(member.clone(), 0..5)
        .prop_map(|ms| format!("\"attrs\":{{{}}}", ms.join(",")));
    let top = prop_oneof![4 => member, 1 => attrs, 1 => Just("\"attrs\":null".to_string())];
    (
        prop::collection::vec(top, 0..9),
        ws.clone(),
        prop::sample::select(vec!["", "", "", " \n", "x", "}", ",", "{}"]),
    )
        .prop_map(|(ms, w, tail)| format!("{w}{{{}}}{w}{tail}", ms.join(",")))
}

/// The fast path and the general one agree on every input, accepted or not (compared through
/// `Debug`, so even a zero's sign counts).
fn same_as_the_general_path(text: &[u8]) -> Result<(), TestCaseError> {
    let l = limits();
    let fast = format!("{:?}", decode_json(text, &l));
    let general = format!("{:?}", super::json::decode_json_general(text, &l));
    prop_assert_eq!(fast, general, "{}", String::from_utf8_lossy(text));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn the_json_fast_path_agrees_with_the_general_one_on_edge_texts(t in json_text()) {
        same_as_the_general_path(t.as_bytes())?;
    }

    #[test]
    fn the_json_fast_path_agrees_with_the_general_one_on_events(
        ev in event(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let j = encode_json(&ev).into_bytes();
        same_as_the_general_path(&j)?;
        let mut m = j.clone();
        let i = pos.index(m.len());
        m[i] = byte;
        same_as_the_general_path(&m)?;
    }

    #[test]
    fn the_json_fast_path_agrees_with_the_general_one_on_any_json(v in json_value()) {
        same_as_the_general_path(v.to_string().as_bytes())?;
    }
}

#[test]
fn the_fast_path_takes_the_common_shape() {
    // A guard on the speed claim: the everyday event shape must not fall back.
    let line = r#" {"attrs":{"checkin_id":"ci-11-0","due_at":"2026-01-07T10:00:11Z","n":-12,"ok":true,"z":null},"employee_id":"emp-000011","event_id":"s1-108","manager_id":"mgr-00001","occurred_at":"2026-01-05T10:00:11Z","team_id":"team-00001","type":"checkin.scheduled","cohort_id":null,"extra":1.5} "#;
    assert!(super::json::fast_path_takes(line));
    for other in [
        r#"{"event_id":"e\u0031"}"#,
        r#"{"attrs":{"a":[1]}}"#,
        r#"{"type":"a","type":"b"}"#,
        r#"{"a":1} x"#,
    ] {
        assert!(!super::json::fast_path_takes(other), "{other}");
    }
}
