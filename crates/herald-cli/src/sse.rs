//! A reader of `text/event-stream` (server-sent events), enough for herald's own
//! `/v1/broadcasts/{id}/events`: `event:`, `data:` and `id:` fields, events ended by a
//! blank line, comments (`:` lines, the server's keep-alives) ignored.
//!
//! Hand-written because the format is a few lines of rules and the CLI already has the
//! byte stream from reqwest; a crate would add more than it saves.

/// One event as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` name (`message` when the server gave none).
    pub name: String,
    /// The `data:` lines, joined by `\n`.
    pub data: String,
}

/// Splits a byte stream arriving in arbitrary chunks into events.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line not ended yet (a chunk may end mid-line, even mid-character).
    partial: Vec<u8>,
    name: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// The events completed by `chunk`, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &byte in chunk {
            if byte != b'\n' {
                self.partial.push(byte);
                continue;
            }
            let mut line = std::mem::take(&mut self.partial);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        events
    }

    /// Takes one complete line; a blank one ends the event being built.
    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let data = self.data.take();
            let name = self.name.take();
            // An event without data is not dispatched (per the SSE rules).
            return data.map(|data| SseEvent {
                name: name.unwrap_or_else(|| "message".to_string()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.name = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            // `id:` and `retry:` steer browsers' automatic reconnection; the CLI
            // resynchronises from the snapshot each new stream starts with instead.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{SseEvent, SseParser};

    fn event(name: &str, data: &str) -> SseEvent {
        SseEvent { name: name.to_string(), data: data.to_string() }
    }

    #[test]
    fn events_split_across_chunks_come_out_whole_and_in_order() {
        let mut parser = SseParser::default();
        let text = "event: snapshot\ndata: {\"a\":1}\n\n:keep-alive\n\nevent: delivery\r\ndata: x\r\ndata: y\r\n\r\ndata:plain\n\n";
        let mut events = Vec::new();
        // One byte at a time: the hardest split there is.
        for byte in text.as_bytes() {
            events.extend(parser.push(std::slice::from_ref(byte)));
        }
        assert_eq!(
            events,
            vec![
                event("snapshot", "{\"a\":1}"),
                event("delivery", "x\ny"),
                event("message", "plain")
            ]
        );
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        let mut parser = SseParser::default();
        assert!(parser.push(b"event: done\ndata: {}\n").is_empty());
        assert_eq!(parser.push(b"\n"), vec![event("done", "{}")]);
        assert!(parser.push(b"event: lonely\n\n").is_empty(), "no data, no event");
    }

    #[test]
    fn multi_byte_characters_split_between_chunks_survive() {
        let mut parser = SseParser::default();
        let bytes = "data: disk 90 % — full\n\n".as_bytes();
        let middle = bytes.iter().position(|&b| b == 0xE2).unwrap_or(0) + 1;
        assert!(parser.push(&bytes[..middle]).is_empty());
        assert_eq!(parser.push(&bytes[middle..]), vec![event("message", "disk 90 % — full")]);
    }
}
