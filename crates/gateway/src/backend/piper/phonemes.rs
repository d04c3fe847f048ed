//! Text to a Piper voice's input ids, the way Piper does it: sentences, each phonemised by
//! espeak-ng (`-q --ipa`, one line per clause), clauses joined by a comma and the sentence's
//! own terminator kept, NFD-normalised, each character mapped through the voice's
//! `phoneme_id_map`, every id followed by the pad id, the whole wrapped in `^` … `$`.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use unicode_normalization::UnicodeNormalization;

use crate::backend::BackendError;

/// Start of a sequence.
const BOS: char = '^';
/// End of a sequence.
const EOS: char = '$';
/// The id put after every phoneme.
const PAD: char = '_';

/// The longest espeak-ng may take to phonemise one sentence.
const ESPEAK_TIMEOUT: Duration = Duration::from_secs(20);

/// The text cut into sentences, each with its terminator (`.`, `!` or `?`; `.` when the
/// text has none). Newlines end sentences too.
pub fn sentences(text: &str) -> Vec<(String, char)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let flush = |current: &mut String, terminator: char, out: &mut Vec<(String, char)>| {
        let sentence = current.trim();
        if sentence.chars().any(char::is_alphanumeric) {
            out.push((sentence.to_owned(), terminator));
        }
        current.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '.' | '!' | '?' => {
                // A terminator ends a sentence only before a space or the end ("3.5" stays).
                let mut end = c;
                while let Some(&next) = chars.peek() {
                    if matches!(next, '.' | '!' | '?') {
                        if next != '.' {
                            end = next;
                        }
                        chars.next();
                    } else {
                        break;
                    }
                }
                if chars.peek().is_none_or(|n| n.is_whitespace()) {
                    flush(&mut current, end, &mut out);
                } else {
                    current.push(c);
                }
            }
            '\n' | '\r' => flush(&mut current, '.', &mut out),
            _ => current.push(c),
        }
    }
    flush(&mut current, '.', &mut out);
    out
}

/// Phonemises one sentence with espeak-ng `voice` (`en-us`): its clauses joined by `, `,
/// followed by `terminator`.
pub async fn phonemize(
    espeak: &str,
    voice: &str,
    sentence: &str,
    terminator: char,
) -> Result<String, BackendError> {
    let mut child = tokio::process::Command::new(espeak)
        .args(["-v", voice, "-q", "--ipa", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            BackendError::Unavailable(format!(
                "cannot run {espeak} to phonemise for Piper ({e}); install the Debian package espeak-ng"
            ))
        })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = sentence.to_owned();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
        let _ = stdin.shutdown().await;
    });
    let output = tokio::time::timeout(ESPEAK_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| BackendError::Failed("espeak-ng took too long to phonemise".into()))?
        .map_err(|e| BackendError::Failed(format!("espeak-ng failed: {e}")))?;
    let _ = writer.await;
    if !output.status.success() {
        return Err(BackendError::Failed(format!(
            "espeak-ng exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let ipa = String::from_utf8_lossy(&output.stdout);
    let clauses: Vec<&str> = ipa
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut phonemes = clauses.join(", ");
    phonemes.push(terminator);
    Ok(phonemes)
}

/// A voice's map from phoneme characters to ids.
#[derive(Clone, Debug)]
pub struct PhonemeIds {
    map: HashMap<char, Vec<i64>>,
}

impl PhonemeIds {
    /// From the voice config's `phoneme_id_map` (`{"a": [14], …}`); it must map `^`, `$`
    /// and `_`.
    pub fn from_config(map: &serde_json::Value) -> Result<Self, String> {
        let object = map.as_object().ok_or("phoneme_id_map is not an object")?;
        let mut ids = HashMap::new();
        for (key, value) in object {
            let mut chars = key.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return Err(format!("phoneme_id_map key {key:?} is not one character"));
            };
            let list = value
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(serde_json::Value::as_i64)
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| format!("phoneme_id_map[{key:?}] is not a list of ids"))?;
            ids.insert(c, list);
        }
        for needed in [BOS, EOS, PAD] {
            if !ids.contains_key(&needed) {
                return Err(format!("phoneme_id_map has no {needed:?}"));
            }
        }
        Ok(Self { map: ids })
    }

    /// The ids of `phonemes` (NFD-normalised first): `^ _ p₁ _ p₂ _ … pₙ _ $`. Characters the
    /// voice does not know are skipped and returned.
    pub fn ids(&self, phonemes: &str) -> (Vec<i64>, Vec<char>) {
        let pad = &self.map[&PAD];
        let mut ids = self.map[&BOS].clone();
        ids.extend(pad);
        let mut missing = Vec::new();
        for c in phonemes.nfd() {
            match self.map.get(&c) {
                Some(id) => {
                    ids.extend(id);
                    ids.extend(pad);
                }
                None => missing.push(c),
            }
        }
        ids.extend(&self.map[&EOS]);
        (ids, missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_cut_into_sentences_keeping_their_terminators() {
        assert_eq!(
            sentences("Hello there. Is it 3.5 USDC?! Yes\nNext line"),
            [
                ("Hello there".to_owned(), '.'),
                ("Is it 3.5 USDC".to_owned(), '!'),
                ("Yes".to_owned(), '.'),
                ("Next line".to_owned(), '.'),
            ]
        );
        assert!(sentences(" ... \n ").is_empty());
    }

    #[test]
    fn ids_interleave_the_pad_between_bos_and_eos() {
        let map = PhonemeIds::from_config(
            &json!({"_": [0], "^": [1], "$": [2], "a": [14], "ˈ": [120], "e": [18], "\u{301}": [130]}),
        )
        .unwrap();
        let (ids, missing) = map.ids("ˈaé?");
        // é decomposes (NFD) into e + combining acute.
        assert_eq!(ids, [1, 0, 120, 0, 14, 0, 18, 0, 130, 0, 2]);
        assert_eq!(missing, ['?']);
        assert!(PhonemeIds::from_config(&json!({"a": [1]})).is_err());
    }

    #[tokio::test]
    async fn espeak_ng_phonemises_each_clause() {
        let phonemes = phonemize("espeak-ng", "en-us", "Hello, world", '?')
            .await
            .expect("espeak-ng is installed by scripts/install-system-deps.sh");
        assert!(phonemes.starts_with("həlˈoʊ, wˈɜːld"), "{phonemes}");
        assert!(phonemes.ends_with('?'), "{phonemes}");
    }
}
