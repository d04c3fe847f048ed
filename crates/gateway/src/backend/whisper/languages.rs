//! The languages multilingual Whisper models know: their codes (as the models' language
//! tokens write them, `<|de|>`) and English names, in the models' token order.

/// (code, English name), in the order of the language tokens (`<|en|>` first).
pub const LANGUAGES: [(&str, &str); 99] = [
    ("en", "english"),
    ("zh", "chinese"),
    ("de", "german"),
    ("es", "spanish"),
    ("ru", "russian"),
    ("ko", "korean"),
    ("fr", "french"),
    ("ja", "japanese"),
    ("pt", "portuguese"),
    ("tr", "turkish"),
    ("pl", "polish"),
    ("ca", "catalan"),
    ("nl", "dutch"),
    ("ar", "arabic"),
    ("sv", "swedish"),
    ("it", "italian"),
    ("id", "indonesian"),
    ("hi", "hindi"),
    ("fi", "finnish"),
    ("vi", "vietnamese"),
    ("he", "hebrew"),
    ("uk", "ukrainian"),
    ("el", "greek"),
    ("ms", "malay"),
    ("cs", "czech"),
    ("ro", "romanian"),
    ("da", "danish"),
    ("hu", "hungarian"),
    ("ta", "tamil"),
    ("no", "norwegian"),
    ("th", "thai"),
    ("ur", "urdu"),
    ("hr", "croatian"),
    ("bg", "bulgarian"),
    ("lt", "lithuanian"),
    ("la", "latin"),
    ("mi", "maori"),
    ("ml", "malayalam"),
    ("cy", "welsh"),
    ("sk", "slovak"),
    ("te", "telugu"),
    ("fa", "persian"),
    ("lv", "latvian"),
    ("bn", "bengali"),
    ("sr", "serbian"),
    ("az", "azerbaijani"),
    ("sl", "slovenian"),
    ("kn", "kannada"),
    ("et", "estonian"),
    ("mk", "macedonian"),
    ("br", "breton"),
    ("eu", "basque"),
    ("is", "icelandic"),
    ("hy", "armenian"),
    ("ne", "nepali"),
    ("mn", "mongolian"),
    ("bs", "bosnian"),
    ("kk", "kazakh"),
    ("sq", "albanian"),
    ("sw", "swahili"),
    ("gl", "galician"),
    ("mr", "marathi"),
    ("pa", "punjabi"),
    ("si", "sinhala"),
    ("km", "khmer"),
    ("sn", "shona"),
    ("yo", "yoruba"),
    ("so", "somali"),
    ("af", "afrikaans"),
    ("oc", "occitan"),
    ("ka", "georgian"),
    ("be", "belarusian"),
    ("tg", "tajik"),
    ("sd", "sindhi"),
    ("gu", "gujarati"),
    ("am", "amharic"),
    ("yi", "yiddish"),
    ("lo", "lao"),
    ("uz", "uzbek"),
    ("fo", "faroese"),
    ("ht", "haitian creole"),
    ("ps", "pashto"),
    ("tk", "turkmen"),
    ("nn", "nynorsk"),
    ("mt", "maltese"),
    ("sa", "sanskrit"),
    ("lb", "luxembourgish"),
    ("my", "myanmar"),
    ("bo", "tibetan"),
    ("tl", "tagalog"),
    ("mg", "malagasy"),
    ("as", "assamese"),
    ("tt", "tatar"),
    ("haw", "hawaiian"),
    ("ln", "lingala"),
    ("ha", "hausa"),
    ("ba", "bashkir"),
    ("jw", "javanese"),
    ("su", "sundanese"),
];

/// The code of `language` (a code or an English name, lower case), if Whisper knows it.
pub fn code(language: &str) -> Option<&'static str> {
    LANGUAGES
        .iter()
        .find(|(code, name)| *code == language || *name == language)
        .map(|(code, _)| *code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_are_read() {
        assert_eq!(code("de"), Some("de"));
        assert_eq!(code("german"), Some("de"));
        assert_eq!(code("english"), Some("en"));
        assert_eq!(code("haw"), Some("haw"));
        assert_eq!(code("klingon"), None);
        assert_eq!(code("auto"), None);
    }

    /// The table is Whisper base's own: its language tokens, in order (the model installed
    /// by `scripts/install-models.sh --whisper-base`).
    #[test]
    fn the_table_is_the_multilingual_models_language_tokens() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models")
            .join(super::super::BASE_DIR);
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .expect("Whisper base is installed: run scripts/install-models.sh --whisper-base")
        };
        let config: serde_json::Value = serde_json::from_slice(&read("config.json")).unwrap();
        let tokenizer = tokenizers::Tokenizer::from_bytes(read("tokenizer.json")).unwrap();
        let tokens: Vec<String> = config["lang_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| tokenizer.id_to_token(id.as_u64().unwrap() as u32).unwrap())
            .collect();
        let ours: Vec<String> = LANGUAGES
            .iter()
            .map(|(code, _)| format!("<|{code}|>"))
            .collect();
        assert_eq!(tokens, ours);
    }
}
