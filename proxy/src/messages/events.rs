//! A Messages API event stream as it flows through: every complete event forwarded
//! unchanged; on the way it reads the usage (`message_start` carries the input and
//! cache counts, `message_delta` the output so far and, from newer models, updated
//! input counts), whether `message_stop` came, and whether an `error` event did.

use serde::Deserialize;
use strata_contract::ServiceTier;

use crate::billing::StreamTap;
use crate::error::OpenAiError;
use crate::normalize::{Usage, find_event_end};

/// Anthropic's `usage` object. Its `input_tokens` exclude the tokens read from and
/// written to the prompt cache, which it counts apart.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AnthropicUsage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
    /// `standard` or `priority` in Anthropic's naming.
    pub service_tier: Option<String>,
}

impl AnthropicUsage {
    /// strata's counting (OpenAI's): input includes what was cached and written.
    pub fn counts(&self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let written = self.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            input_tokens: self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(read)
                .saturating_add(written),
            output_tokens: self.output_tokens.unwrap_or(0),
            cached_tokens: read,
            cache_write_tokens: written,
            service_tier: self
                .service_tier
                .as_deref()
                .map(ServiceTier::reported)
                .unwrap_or_default(),
        }
    }

    /// A later report's counts replace the earlier ones they give.
    fn update(&mut self, later: &AnthropicUsage) {
        let keep = |now: &mut Option<u64>, later: Option<u64>| {
            if later.is_some() {
                *now = later;
            }
        };
        keep(&mut self.input_tokens, later.input_tokens);
        keep(&mut self.output_tokens, later.output_tokens);
        keep(
            &mut self.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
        keep(
            &mut self.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
        if later.service_tier.is_some() {
            self.service_tier.clone_from(&later.service_tier);
        }
    }
}

/// The parts of an event the proxy reads.
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<EventMessage>,
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct EventMessage {
    usage: Option<AnthropicUsage>,
}

#[derive(Debug, Default)]
pub struct MessagesSse {
    pending: Vec<u8>,
    usage: AnthropicUsage,
    saw_stop: bool,
    saw_error: bool,
}

impl MessagesSse {
    fn read(&mut self, event: &[u8]) {
        let Ok(text) = std::str::from_utf8(event) else {
            return;
        };
        let mut data = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim);
        let (Some(payload), None) = (data.next(), data.next()) else {
            return;
        };
        let Ok(event) = serde_json::from_str::<Event>(payload) else {
            return;
        };
        match event.kind.as_deref() {
            Some("message_start") => {
                if let Some(usage) = event.message.and_then(|m| m.usage) {
                    self.usage.update(&usage);
                }
            }
            Some("message_delta") => {
                if let Some(usage) = event.usage {
                    self.usage.update(&usage);
                }
            }
            Some("message_stop") => self.saw_stop = true,
            Some("error") => self.saw_error = true,
            _ => {}
        }
    }
}

impl StreamTap for MessagesSse {
    fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        // Events are read in place; the complete ones go out, the rest waits.
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(chunk);
        let mut complete = 0;
        while let Some((end, sep)) = find_event_end(&buf[complete..]) {
            self.read(&buf[complete..complete + end]);
            complete += end + sep;
        }
        self.pending = buf.split_off(complete);
        buf
    }

    fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        if rest.iter().all(u8::is_ascii_whitespace) {
            return Vec::new();
        }
        self.read(&rest);
        rest
    }

    fn usage(&self) -> Usage {
        self.usage.counts()
    }

    fn completed(&self) -> bool {
        self.saw_stop && !self.saw_error
    }

    fn broken_off(error: &OpenAiError) -> String {
        format!(
            "event: error\ndata: {}\n\n",
            super::anthropic_error_body(error)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":10,"cache_creation_input_tokens":100,"cache_read_input_tokens":20,"output_tokens":1,"service_tier":"priority"}}}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
        "\n\n",
        "event: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}"#,
        "\n\n",
        "event: message_stop\n",
        r#"data: {"type":"message_stop"}"#,
        "\n\n",
    );

    #[test]
    fn events_pass_unchanged_and_usage_adds_the_cache_counts_to_input() {
        // Fed in pieces that split events anywhere.
        for size in [1, 7, 64, STREAM.len()] {
            let mut sse = MessagesSse::default();
            let mut out = Vec::new();
            for piece in STREAM.as_bytes().chunks(size) {
                out.extend(sse.push(piece));
            }
            out.extend(sse.finish());
            assert_eq!(out, STREAM.as_bytes(), "chunks of {size}");
            assert!(sse.completed());
            assert_eq!(
                sse.usage(),
                Usage {
                    input_tokens: 130,
                    output_tokens: 7,
                    cached_tokens: 20,
                    cache_write_tokens: 100,
                    service_tier: ServiceTier::Priority,
                }
            );
        }
    }

    #[test]
    fn a_stream_without_message_stop_or_with_an_error_is_not_completed() {
        let mut cut = MessagesSse::default();
        let stop = STREAM.find("event: message_stop").unwrap_or_default();
        cut.push(&STREAM.as_bytes()[..stop]);
        assert!(!cut.completed());
        assert_eq!(cut.usage().output_tokens, 7);
        let mut failed = MessagesSse::default();
        failed.push(STREAM.as_bytes());
        failed.push(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
        assert!(!failed.completed());
    }
}
