//! A Responses API event stream as it flows through: each event forwarded as soon as
//! its blank line arrives, `event:` lines kept, the `response` object's float
//! timestamps made integers; on the way it notes the response's id (from
//! `response.created`), its final status and usage (from `response.completed`,
//! `response.incomplete` or `response.failed`) and whether an `error` event came.

use serde_json::Value;

use crate::normalize::{Usage, find_event_end, integer_timestamps};

#[derive(Debug, Default)]
pub struct ResponsesSse {
    pending: Vec<u8>,
    /// The id, once `response.created` has passed.
    pub id: Option<String>,
    /// Whether the response runs in the background (from `response.created`).
    pub background: bool,
    /// The final status, once a terminal event has passed.
    pub finished: Option<String>,
    pub usage: Option<Usage>,
    pub saw_error: bool,
}

/// Events that end a response.
const TERMINAL: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];

impl ResponsesSse {
    /// Complete events in `chunk` (with what came before), rewritten; each element is
    /// one event with its separator, so the caller may act between events.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some((end, sep)) = find_event_end(&self.pending) {
            let event: Vec<u8> = self.pending.drain(..end + sep).collect();
            out.push(self.rewrite(&event[..end]));
        }
        out
    }

    /// An unterminated last event, when the upstream closes.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.pending);
        (!rest.iter().all(u8::is_ascii_whitespace)).then(|| self.rewrite(&rest))
    }

    fn rewrite(&mut self, event: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(event);
        let mut out = Vec::with_capacity(event.len() + 2);
        let mut data_lines = text.lines().filter(|l| l.starts_with("data:"));
        let single_data = match (data_lines.next(), data_lines.next()) {
            (Some(line), None) => Some(line),
            _ => None,
        };
        let parsed = single_data.and_then(|line| {
            let payload = line.trim_start_matches("data:").trim();
            serde_json::from_str::<Value>(payload).ok()
        });
        let Some(mut value) = parsed else {
            out.extend_from_slice(event);
            out.extend_from_slice(b"\n\n");
            return out;
        };
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if kind == "error" || value.get("error").is_some_and(|e| !e.is_null()) && kind.is_empty() {
            self.saw_error = true;
        }
        let mut changed = false;
        if let Some(response) = value.get_mut("response") {
            changed = integer_timestamps(response);
            if kind == "response.created" {
                self.id = response
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                self.background = response.get("background").and_then(Value::as_bool) == Some(true);
            }
            if TERMINAL.contains(&kind.as_str()) {
                self.finished = response
                    .get("status")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| Some(kind.trim_start_matches("response.").to_owned()));
                self.usage = Usage::of_object(response);
            }
        }
        if !changed {
            out.extend_from_slice(event);
            out.extend_from_slice(b"\n\n");
            return out;
        }
        for line in text.lines() {
            if line.starts_with("data:") {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(value.to_string().as_bytes());
            } else {
                out.extend_from_slice(line.as_bytes());
            }
            out.push(b'\n');
        }
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, data: &str) -> String {
        format!("event: {kind}\ndata: {data}\n\n")
    }

    #[test]
    fn timestamps_become_integers_and_the_id_status_and_usage_are_noted() {
        let mut sse = ResponsesSse::default();
        let created = event(
            "response.created",
            r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","created_at":1.5,"background":true,"status":"queued"}}"#,
        );
        // Split mid-event: nothing comes out until the blank line.
        let (a, b) = created.split_at(20);
        assert!(sse.push(a.as_bytes()).is_empty());
        let out = sse.push(b.as_bytes());
        assert_eq!(out.len(), 1);
        let text = String::from_utf8_lossy(&out[0]);
        assert!(
            text.starts_with("event: response.created\ndata: {"),
            "{text}"
        );
        assert!(
            text.contains(r#""created_at":1,"#) || text.contains(r#""created_at":1}"#),
            "{text}"
        );
        assert_eq!(sse.id.as_deref(), Some("resp_1"));
        assert!(sse.background);
        let delta = event(
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","sequence_number":1,"delta":"hi"}"#,
        );
        assert_eq!(sse.push(delta.as_bytes()), vec![delta.clone().into_bytes()]);
        let done = event(
            "response.completed",
            r#"{"type":"response.completed","sequence_number":2,"response":{"id":"resp_1","created_at":1,"status":"completed","usage":{"input_tokens":5,"output_tokens":2,"input_tokens_details":{"cached_tokens":1}}}}"#,
        );
        sse.push(done.as_bytes());
        assert_eq!(sse.finished.as_deref(), Some("completed"));
        assert_eq!(
            sse.usage,
            Some(Usage {
                input_tokens: 5,
                output_tokens: 2,
                cached_tokens: 1,
                cache_write_tokens: 0,
                service_tier: Default::default(),
            })
        );
        assert!(!sse.saw_error);
        sse.push(event("error", r#"{"type":"error","message":"boom"}"#).as_bytes());
        assert!(sse.saw_error);
    }
}
