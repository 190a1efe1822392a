//! A small, editable sentiment lexicon for `feedback.comment` text: words that read negative or
//! positive, and negators that flip the word after them. The text is scored and forgotten: it is
//! never stored, logged or published.

use std::collections::HashSet;

use serde::Deserialize;

/// The built-in lexicon (`config/sentiment-lexicon.toml` holds the same, to copy and edit).
pub const BUILTIN: &str = include_str!("../../config/sentiment-lexicon.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LexiconFile {
    negative: Vec<String>,
    positive: Vec<String>,
    negators: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Lexicon {
    negative: HashSet<String>,
    positive: HashSet<String>,
    negators: HashSet<String>,
}

impl Lexicon {
    pub fn parse(text: &str) -> Result<Lexicon, String> {
        let f: LexiconFile = toml_from_str(text)?;
        let set = |v: Vec<String>| {
            v.into_iter()
                .map(|w| w.trim().to_lowercase())
                .filter(|w| !w.is_empty())
                .collect()
        };
        Ok(Lexicon {
            negative: set(f.negative),
            positive: set(f.positive),
            negators: set(f.negators),
        })
    }

    pub fn builtin() -> Lexicon {
        Lexicon::parse(BUILTIN).unwrap_or_else(|_| Lexicon {
            negative: HashSet::new(),
            positive: HashSet::new(),
            negators: HashSet::new(),
        })
    }

    /// The lexicon in a file, or the built-in one for an empty path.
    pub fn load(path: &str) -> Result<Lexicon, String> {
        if path.is_empty() {
            return Ok(Lexicon::builtin());
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        Lexicon::parse(&text).map_err(|e| format!("{path}: {e}"))
    }

    /// Positive minus negative words, a negator flipping the next sentiment word within two.
    pub fn score(&self, words: &[String]) -> i32 {
        let mut score = 0;
        let mut flip_for = 0;
        for w in words {
            if self.negators.contains(w.as_str()) || w.ends_with("n't") {
                flip_for = 3;
                continue;
            }
            let v = if self.negative.contains(w.as_str()) {
                -1
            } else if self.positive.contains(w.as_str()) {
                1
            } else {
                0
            };
            if v != 0 {
                score += if flip_for > 0 { -v } else { v };
                flip_for = 0;
            } else if flip_for > 0 {
                flip_for -= 1;
            }
        }
        score
    }
}

/// Lower-case words (letters, digits, apostrophes).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

/// Whether the words mention a theme: a keyword matches a word that starts with it; a keyword
/// of several words matches that phrase. Keywords must be lower case, like the words.
pub fn mentions(words: &[String], joined: &str, keywords: &[String]) -> bool {
    keywords.iter().any(|k| {
        if k.contains(' ') {
            joined.contains(k.as_str())
        } else {
            words.iter().any(|w| w.starts_with(k.as_str()))
        }
    })
}

fn toml_from_str(text: &str) -> Result<LexiconFile, String> {
    let c = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| e.to_string())?;
    c.try_deserialize().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_positive_and_negated() {
        let l = Lexicon::builtin();
        assert!(l.score(&words("The workload is crushing and I feel burned out")) < 0);
        assert!(l.score(&words("Great team, really supportive manager")) > 0);
        assert!(l.score(&words("I am not happy with the promotion process")) < 0);
        assert!(l.score(&words("The deadline was not bad at all")) > 0);
    }

    #[test]
    fn themes_match_word_prefixes_and_phrases() {
        let w = words("Promotions here are opaque; too much work lately");
        let joined = w.join(" ");
        assert!(mentions(&w, &joined, &["promot".to_string()]));
        assert!(mentions(&w, &joined, &["too much work".to_string()]));
        assert!(!mentions(&w, &joined, &["manager".to_string()]));
    }
}
