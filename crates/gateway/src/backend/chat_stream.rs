//! Counting the completion tokens of a streamed chat answer as its bytes go out: the upstream's
//! server-sent events are read incrementally (an event may be split across chunks, several may
//! share one), and the text of every `choices[].delta` (its `content`, and the `arguments` of
//! its tool calls) is counted at the gateway's estimate of 4 characters a token, unless the
//! upstream's usage chunk was passed on: its `completion_tokens` then count. Lines that are not
//! `data:`, and data that is not JSON, are skipped; nothing after `data: [DONE]` counts.

use serde_json::Value;

use super::chat::estimated_tokens;

/// The completion tokens of the event stream fed so far.
#[derive(Debug, Default)]
pub struct CompletionCounter {
    /// The bytes of a line not yet ended.
    line: Vec<u8>,
    /// The `data` of the event being read (its lines joined by `\n`).
    data: String,
    /// The characters of text in the events read.
    chars: u64,
    /// What the upstream's usage chunk said.
    reported: Option<u64>,
    /// Whether `data: [DONE]` was read.
    done: bool,
}

impl CompletionCounter {
    /// Reads the next bytes of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|b| *b == b'\n') {
            self.line.extend_from_slice(&bytes[..end]);
            bytes = &bytes[end + 1..];
            let line = std::mem::take(&mut self.line);
            self.read_line(&line);
        }
        self.line.extend_from_slice(bytes);
    }

    /// The completion tokens of the events read to their end.
    pub fn completion_tokens(&self) -> u64 {
        self.reported
            .unwrap_or_else(|| estimated_tokens(self.chars))
    }

    fn read_line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            let data = std::mem::take(&mut self.data);
            self.read_event(&data);
        } else if let Some(value) = line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            if !self.data.is_empty() {
                self.data.push('\n');
            }
            self.data.push_str(&String::from_utf8_lossy(value));
        }
    }

    fn read_event(&mut self, data: &str) {
        if self.done || data.is_empty() {
            return;
        }
        if data.trim() == "[DONE]" {
            self.done = true;
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return;
        };
        let chars = |text: &Value| text.as_str().map_or(0, |t| t.chars().count() as u64);
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            let delta = &choice["delta"];
            self.chars += chars(&delta["content"]);
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                self.chars += chars(&call["function"]["arguments"]);
            }
        }
        if let Some(tokens) = chunk["usage"]["completion_tokens"].as_u64() {
            self.reported = Some(tokens);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(content: &str) -> String {
        let chunk = serde_json::json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}}]});
        format!("data: {chunk}\n\n")
    }

    fn counted(stream: &[u8], chunk_size: usize) -> u64 {
        let mut counter = CompletionCounter::default();
        for piece in stream.chunks(chunk_size) {
            counter.feed(piece);
        }
        counter.completion_tokens()
    }

    #[test]
    fn events_split_anywhere_count_the_same() {
        // 12 + 5 + 7 characters: 24, six tokens; "é" is one character in two bytes.
        let stream = format!(
            "{}{}{}data: [DONE]\n\n",
            chunk("Hello there "),
            chunk("é and"),
            chunk(" more!!")
        );
        for size in [1, 2, 3, 7, 64, stream.len()] {
            assert_eq!(counted(stream.as_bytes(), size), 6, "chunks of {size}");
        }
    }

    #[test]
    fn an_event_not_yet_ended_is_not_counted() {
        let mut counter = CompletionCounter::default();
        counter.feed(chunk("abcd").as_bytes());
        let next = chunk("efghijkl");
        counter.feed(&next.as_bytes()[..next.len() - 1]);
        assert_eq!(counter.completion_tokens(), 1);
        counter.feed(b"\n");
        assert_eq!(counter.completion_tokens(), 3);
    }

    #[test]
    fn nothing_after_done_counts() {
        let stream = format!("{}data: [DONE]\n\n{}", chunk("abcd"), chunk("efgh"));
        assert_eq!(counted(stream.as_bytes(), 5), 1);
    }

    #[test]
    fn the_upstreams_usage_chunk_counts_when_it_was_passed_on() {
        let usage = r#"data: {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 42, "total_tokens": 51}}"#;
        let stream = format!("{}{usage}\n\ndata: [DONE]\n\n", chunk("abcd"));
        assert_eq!(counted(stream.as_bytes(), 3), 42);
    }

    #[test]
    fn other_lines_and_data_that_is_not_json_are_skipped() {
        let stream = format!(
            ": keep-alive\r\nevent: ping\r\ndata: not json\r\n\r\nid: 7\nretry: 10\n\n{}data:{{\"choices\":[{{\"delta\":{{\"tool_calls\":[{{\"function\":{{\"arguments\":\"{{}}xy\"}}}}]}}}}]}}\n\n",
            chunk("abcd")
        );
        // "abcd" and the tool call's "{}xy": eight characters.
        assert_eq!(counted(stream.as_bytes(), 4), 2);
    }

    #[test]
    fn a_multi_line_event_is_one_json_document() {
        let stream = "data: {\"choices\": [{\"delta\":\ndata: {\"content\": \"abcdefgh\"}}]}\n\n";
        assert_eq!(counted(stream.as_bytes(), 10), 2);
    }
}
