//! Counting the tokens of a streamed chat answer as its bytes go out: the upstream's
//! server-sent events are read incrementally (an event may be split across chunks, several may
//! share one). The upstream's own count wins when it comes: a `usage` in a chunk whose deltas
//! carry no text (OpenAI's last chunk under `stream_options.include_usage`, which the gateway
//! always asks for) is what the stream used, prompt and completion. Until then, or when it never
//! comes (an upstream that does not count, a stream that breaks), the count is conservative:
//! the prompt's estimate, plus the most of the [`TokenEstimate`] of every text field of every
//! delta (content, reasoning, refusal, tool call arguments), the number of deltas carrying text
//! (an upstream sends at least a token in each), and any `usage` seen along the way (a running
//! count never lowers the estimate). Lines that are not `data:`, and data that is not JSON, are
//! skipped; nothing after `data: [DONE]` counts.
//!
//! OpenAI sends the usage chunk only to a client that asked for it, and a client that did not
//! may read `choices[0]` of every chunk: [`SseFilter`] passes the stream on without it.

use serde_json::Value;

use super::chat::{TokenEstimate, answer_texts};

/// The tokens of the event stream fed so far.
#[derive(Debug, Default)]
pub struct CompletionCounter {
    /// The bytes of a line not yet ended.
    line: Vec<u8>,
    /// The `data` of the event being read (its lines joined by `\n`).
    data: String,
    /// The estimate of the text in the deltas read.
    answer: TokenEstimate,
    /// The deltas read that carry text.
    deltas: u64,
    /// The most prompt and completion tokens a `usage` said along the way.
    running: (u64, u64),
    /// The prompt plus completion tokens of the upstream's final count, when it was the last
    /// thing read.
    counted: Option<u64>,
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

    /// The tokens the events read to their end used, prompt and completion, for a prompt the
    /// gateway estimated at `prompt_estimate`: the upstream's final count, else the
    /// conservative count.
    pub fn tokens(&self, prompt_estimate: u64) -> u64 {
        self.counted.unwrap_or_else(|| {
            let (prompt, completion) = self.running;
            let completion = completion.max(self.answer.tokens()).max(self.deltas);
            prompt_estimate.max(prompt).saturating_add(completion)
        })
    }

    fn read_line(&mut self, line: &[u8]) {
        if is_blank(line) {
            let data = std::mem::take(&mut self.data);
            self.read_event(&data);
        } else if let Some(value) = data_value(line) {
            push_data(&mut self.data, value);
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
        let mut carries_text = false;
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            let mut texts = answer_texts(&choice["delta"])
                .filter(|t| !t.is_empty())
                .peekable();
            if texts.peek().is_some() {
                carries_text = true;
                self.deltas += 1;
            }
            texts.for_each(|text| self.answer.add(text));
        }
        if carries_text {
            // Text after a count: that count was not the last word (it stays in `running`).
            self.counted = None;
        }
        let usage = &chunk["usage"];
        let (Some(prompt), Some(completion)) = (
            usage["prompt_tokens"].as_u64(),
            usage["completion_tokens"].as_u64(),
        ) else {
            return;
        };
        self.running = (self.running.0.max(prompt), self.running.1.max(completion));
        if !carries_text {
            self.counted = Some(prompt.saturating_add(completion));
        }
    }
}

/// An event stream passed on without the upstream's usage-only event (a `data:` JSON chunk
/// whose `choices` are empty or absent and which carries a `usage`), for a client that did not
/// ask for it. Everything else goes on byte for byte, in order, each event as soon as its
/// blank line arrives (`\n\n` or `\r\n\r\n`); only the bytes of an event not yet ended are
/// held, until it ends or [`SseFilter::finish`].
#[derive(Debug, Default)]
pub struct SseFilter {
    /// The bytes of the event not yet ended.
    held: Vec<u8>,
    /// Where the line not yet ended starts in `held`.
    line_start: usize,
}

impl SseFilter {
    /// Reads the next bytes of the stream: what to pass on now.
    pub fn pass(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut event_start = 0;
        let mut from = self.held.len();
        self.held.extend_from_slice(bytes);
        while let Some(newline) = self.held[from..].iter().position(|b| *b == b'\n') {
            let end = from + newline + 1;
            if is_blank(&self.held[self.line_start..end - 1]) {
                let event = &self.held[event_start..end];
                if !is_usage_only(event) {
                    out.extend_from_slice(event);
                }
                event_start = end;
            }
            self.line_start = end;
            from = end;
        }
        self.held.drain(..event_start);
        self.line_start -= event_start;
        out
    }

    /// The stream is over (ended or broken): the bytes still held, passed on as they are.
    pub fn finish(&mut self) -> Vec<u8> {
        self.line_start = 0;
        std::mem::take(&mut self.held)
    }
}

/// Whether `event` (its lines, its blank line) is a usage-only chunk.
fn is_usage_only(event: &[u8]) -> bool {
    let mut data = String::new();
    event
        .split(|b| *b == b'\n')
        .filter_map(data_value)
        .for_each(|value| push_data(&mut data, value));
    let Ok(chunk) = serde_json::from_str::<Value>(&data) else {
        return false;
    };
    let no_choices = chunk
        .get("choices")
        .is_none_or(|choices| choices.as_array().is_some_and(Vec::is_empty));
    no_choices && chunk.get("usage").is_some_and(Value::is_object)
}

/// Whether a line (without its `\n`) is blank: the end of an event.
fn is_blank(line: &[u8]) -> bool {
    line.is_empty() || line == b"\r"
}

/// The value of a `data:` line (without its `\n`).
fn data_value(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let value = line.strip_prefix(b"data:")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// Adds a `data:` line's value to an event's data.
fn push_data(data: &mut String, value: &[u8]) {
    if !data.is_empty() {
        data.push('\n');
    }
    data.push_str(&String::from_utf8_lossy(value));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(chunk: Value) -> String {
        format!("data: {chunk}\n\n")
    }

    fn delta(delta: Value) -> String {
        event(json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}))
    }

    fn chunk(content: &str) -> String {
        delta(json!({"content": content}))
    }

    /// OpenAI's last chunk under `include_usage`: no choices, the counts.
    fn usage_chunk(prompt: u64, completion: u64) -> String {
        event(
            json!({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}),
        )
    }

    fn fed(stream: &[u8], chunk_size: usize) -> CompletionCounter {
        let mut counter = CompletionCounter::default();
        for piece in stream.chunks(chunk_size) {
            counter.feed(piece);
        }
        counter
    }

    /// The completion tokens counted (no prompt).
    fn counted(stream: &[u8], chunk_size: usize) -> u64 {
        fed(stream, chunk_size).tokens(0)
    }

    #[test]
    fn events_split_anywhere_count_the_same() {
        // 23 ASCII characters (six tokens) and "é", two bytes (two tokens).
        let stream = format!(
            "{}{}{}data: [DONE]\n\n",
            chunk("Hello there "),
            chunk("é and"),
            chunk(" more!!")
        );
        for size in [1, 2, 3, 7, 64, stream.len()] {
            assert_eq!(counted(stream.as_bytes(), size), 8, "chunks of {size}");
        }
    }

    #[test]
    fn an_event_not_yet_ended_is_not_counted() {
        let mut counter = CompletionCounter::default();
        counter.feed(chunk("abcd").as_bytes());
        let next = chunk("efghijkl");
        counter.feed(&next.as_bytes()[..next.len() - 1]);
        assert_eq!(counter.tokens(0), 1);
        counter.feed(b"\n");
        assert_eq!(counter.tokens(0), 3);
    }

    #[test]
    fn nothing_after_done_counts() {
        let stream = format!("{}data: [DONE]\n\n{}", chunk("abcd"), chunk("efgh"));
        assert_eq!(counted(stream.as_bytes(), 5), 1);
    }

    #[test]
    fn cjk_and_emoji_count_at_least_a_token_a_character() {
        // Four CJK characters of three bytes: not 1 token (4 characters at 4 a token) but 12.
        let cjk = "你好世界";
        let stream = chunk(cjk);
        assert_eq!(counted(stream.as_bytes(), 5), 12);
        assert!(counted(stream.as_bytes(), 5) >= cjk.chars().count() as u64);
        // Emoji of four bytes: four tokens each, what a byte-level tokenizer may make of them.
        let stream = format!("{}{}", chunk("😀🦀"), chunk("🦀"));
        assert_eq!(counted(stream.as_bytes(), 3), 12);
    }

    #[test]
    fn every_delta_carrying_text_is_at_least_a_token() {
        // Twenty deltas of one character: twenty tokens, not five.
        let stream = "x"
            .repeat(20)
            .chars()
            .map(|c| chunk(&c.to_string()))
            .collect::<String>();
        assert_eq!(counted(stream.as_bytes(), 7), 20);
        // Deltas without text (a role, an empty content) are not.
        let stream = format!(
            "{}{}{}",
            delta(json!({"role": "assistant"})),
            chunk(""),
            chunk("abcd")
        );
        assert_eq!(counted(stream.as_bytes(), 7), 1);
    }

    #[test]
    fn reasoning_refusals_and_tool_calls_count_like_content() {
        let stream = [
            delta(json!({"reasoning_content": "abcdefgh"})),
            delta(json!({"reasoning": "思考"})),
            delta(json!({"refusal": "abcd"})),
            delta(json!({"tool_calls": [{"function": {"arguments": "{}xy"}}]})),
            delta(json!({"function_call": {"arguments": "abcd"}})),
        ]
        .concat();
        // 20 ASCII characters (five tokens) and two CJK characters (six): 11, over 5 deltas.
        assert_eq!(counted(stream.as_bytes(), 9), 11);
    }

    #[test]
    fn the_upstreams_last_usage_chunk_is_what_the_stream_used() {
        let stream = format!(
            "{}{}data: [DONE]\n\n",
            chunk("你好世界"),
            usage_chunk(9, 42)
        );
        let counter = fed(stream.as_bytes(), 3);
        // The upstream's prompt and completion tokens, not the estimates (100 and 12).
        assert_eq!(counter.tokens(100), 51);
        // Below the conservative estimate too: the upstream counted.
        let stream = format!("{}{}", chunk("你好世界"), usage_chunk(2, 3));
        assert_eq!(fed(stream.as_bytes(), 4).tokens(100), 5);
    }

    #[test]
    fn a_usage_seen_early_never_lowers_the_estimate() {
        // A running count in chunks that carry text (vLLM's continuous usage): the most of it
        // and the estimate.
        let running = event(
            json!({"choices": [{"delta": {"content": "你好世界"}}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
        );
        let stream = format!("{running}{}", chunk("abcd"));
        assert_eq!(fed(stream.as_bytes(), 5).tokens(10), 10 + 13);
        // A count without text followed by more text was not the last word.
        let stream = format!(
            "{}{}{}",
            chunk("abcd"),
            usage_chunk(3, 1),
            chunk("你好世界")
        );
        assert_eq!(fed(stream.as_bytes(), 5).tokens(10), 10 + 13);
        // A running count above the estimate is kept when the stream breaks.
        let running = event(
            json!({"choices": [{"delta": {"content": "ab"}}], "usage": {"prompt_tokens": 30, "completion_tokens": 40}}),
        );
        assert_eq!(fed(running.as_bytes(), 5).tokens(10), 30 + 40);
    }

    #[test]
    fn without_a_usage_chunk_the_prompt_estimate_and_the_answer_estimate_count() {
        let stream = format!("{}{}", chunk("abcdefgh"), chunk("你"));
        assert_eq!(fed(stream.as_bytes(), 5).tokens(7), 7 + 2 + 3);
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

    /// What a client gets of `stream` fed in chunks of `size`, and what each feed passed on.
    fn filtered(stream: &[u8], size: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut filter = SseFilter::default();
        let mut passes: Vec<Vec<u8>> = stream.chunks(size).map(|c| filter.pass(c)).collect();
        passes.push(filter.finish());
        (passes.concat(), passes)
    }

    #[test]
    fn the_usage_only_event_is_dropped_and_the_rest_passes_byte_for_byte() {
        let kept = [
            ": keep-alive\n\n".to_owned(),
            chunk("你好"),
            event(
                json!({"choices": [{"delta": {"content": "ab"}}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
            ),
            "event: ping\ndata: not json\n\n".to_owned(),
        ]
        .concat();
        let stream = format!("{kept}{}data: [DONE]\n\n", usage_chunk(9, 42));
        for size in [1, 2, 5, 13, stream.len()] {
            let (out, _) = filtered(stream.as_bytes(), size);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("{kept}data: [DONE]\n\n"),
                "chunks of {size}"
            );
        }
        // A usage without choices at all is dropped too (one with a choice is kept, above).
        let bare = event(json!({"usage": {"prompt_tokens": 1, "completion_tokens": 1}}));
        assert!(filtered(bare.as_bytes(), 4).0.is_empty());
    }

    #[test]
    fn crlf_events_are_read_and_kept_as_they_came() {
        let crlf = |s: String| s.replace('\n', "\r\n");
        let kept = crlf(format!("{}{}", chunk("ab"), "data: [DONE]\n\n"));
        let stream = format!("{}{}{kept}", crlf(chunk("cd")), crlf(usage_chunk(1, 2)));
        for size in [1, 3, stream.len()] {
            let (out, _) = filtered(stream.as_bytes(), size);
            assert_eq!(out, format!("{}{kept}", crlf(chunk("cd"))).as_bytes());
        }
    }

    #[test]
    fn an_event_goes_on_as_soon_as_it_ends_and_a_partial_one_at_the_end() {
        let first = chunk("ab");
        let mut filter = SseFilter::default();
        // Its blank line not yet come: held.
        assert!(filter.pass(&first.as_bytes()[..first.len() - 1]).is_empty());
        // The blank line and the start of the next event: the first goes on, whole.
        assert_eq!(filter.pass(b"\ndata: {\"cho"), first.as_bytes());
        // A stream that breaks there: the partial event is flushed as it is.
        assert_eq!(filter.finish(), b"data: {\"cho");
        assert!(filter.finish().is_empty());
        // Several events in one chunk go on at once, a usage-only one in the middle dropped.
        let stream = format!("{}{}{}", chunk("a"), usage_chunk(1, 1), chunk("b"));
        let (out, passes) = filtered(stream.as_bytes(), stream.len());
        assert_eq!(out, format!("{}{}", chunk("a"), chunk("b")).as_bytes());
        assert!(passes.last().unwrap().is_empty());
        // An unterminated usage chunk at the end is flushed, not judged.
        let cut = usage_chunk(1, 1);
        let cut = cut.trim_end();
        assert_eq!(filtered(cut.as_bytes(), 7).0, cut.as_bytes());
    }
}
