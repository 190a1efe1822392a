use super::*;

/// A contribution's bytes are what they were when ids were boxed strings: a length and
/// the bytes (postcard's str), so the repartition topic and changelogs written before read
/// the same.
#[test]
fn group_and_task_ids_encode_as_plain_strings() {
    let c = Contribution {
        group: GroupRef::Cohort("cohort-with-a-name-longer-than-24".into()),
        emp: 1,
        at: 2,
        eid: 3,
        what: What::TaskStarted("t1".into()),
    };
    let b = postcard::to_allocvec(&c).unwrap();
    let mut want = vec![1u8, 33];
    want.extend_from_slice(b"cohort-with-a-name-longer-than-24");
    want.extend_from_slice(&[1, 4, 3, 5, 2]);
    want.extend_from_slice(b"t1");
    assert_eq!(b, want);
    assert_eq!(postcard::from_bytes::<Contribution>(&b).unwrap(), c);
    // The same as a boxed string's encoding.
    assert_eq!(
        postcard::to_allocvec(&"t1".to_string().into_boxed_str()).unwrap(),
        [2, b't', b'1']
    );
}

/// Comments' words are lower-cased; so are the configured keywords, once, at start.
#[test]
fn theme_keywords_match_whatever_their_case_in_the_settings() {
    let mut s = Settings::default();
    s.rules.team_sentiment_shift.themes = [(
        "workload".to_string(),
        vec!["OverLoad".to_string(), "Too Much Work".to_string()],
    )]
    .into_iter()
    .collect();
    let p = Params::from(&s);
    let themes = &p.sentiment.as_ref().expect("enabled by default").themes;
    let keywords = &themes[0].1;
    for text in ["We are overloaded", "there is too much work here"] {
        let w = sentiment::words(text);
        assert!(sentiment::mentions(&w, &w.join(" "), keywords), "{text}");
    }
}
