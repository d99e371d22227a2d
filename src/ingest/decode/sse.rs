//! An incremental server-sent-events parser (the WHATWG `text/event-stream` format), for Mastodon's
//! hashtag stream: bytes in as they arrive, whole events out, a line too long refused.
//!
//! Pure: no I/O, no state beyond the parser's buffer.

/// One dispatched server-sent event: its `event` name (`message` when the server named none) and its
/// `data` lines joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// The SSE stream buffered more than the parser's cap without completing a line or an event.
///
/// The connection is broken or hostile: end it and reconnect with a new [`SseParser`].
#[derive(Debug, thiserror::Error)]
#[error("server-sent events: over {max} bytes buffered without completing a line or an event")]
pub struct SseOverflow {
    /// The cap that was exceeded.
    pub max: usize,
    /// Events completed earlier in the same chunk, in order, so that none is lost.
    pub completed: Vec<SseEvent>,
}

/// An incremental parser of a `text/event-stream` body (the WHATWG rules), fed raw chunks as they
/// arrive.
///
/// Chunk boundaries may fall anywhere, inside a line, a CRLF or a UTF-8 character: bytes are buffered
/// until their line is complete, and only complete lines are decoded (lossily, as the spec says). Lines
/// end in LF, CRLF or CR. Comment lines (`:)` on connect, `:thump` heartbeats) are skipped; `data` lines
/// accumulate until a blank line dispatches the event; `id`, `retry` and unknown fields are ignored. A
/// partial last line, or an event never closed by a blank line, is kept and never dispatched unless
/// more bytes complete it.
#[derive(Debug)]
pub struct SseParser {
    max_line: usize,
    /// The incomplete line carried over from earlier chunks.
    line: Vec<u8>,
    /// The previous chunk ended in CR: an LF opening the next one completes that line ending.
    after_cr: bool,
    /// A line has been processed (a byte-order mark is only skipped on the first).
    started: bool,
    event: String,
    /// `data` values, each followed by `\n` (the last one is dropped when dispatching).
    data: String,
}

const BOM: &[u8] = "\u{feff}".as_bytes();

impl SseParser {
    /// A parser that refuses to buffer more than `max_line` bytes of one line, or of one event's data.
    pub fn new(max_line: usize) -> SseParser {
        SseParser {
            max_line,
            line: Vec::new(),
            after_cr: false,
            started: false,
            event: String::new(),
            data: String::new(),
        }
    }

    /// Feeds the next chunk of the body; returns the events it completed, in order.
    ///
    /// # Errors
    ///
    /// [`SseOverflow`] when an incomplete line, or the data of an undispatched event, grows past the
    /// cap. The events completed before that point are in the error; the parser is reset, but the
    /// stream is out of sync: end the connection.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseOverflow> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, terminator_and_tail) = rest.split_at(end);
            let Some((&terminator, mut tail)) = terminator_and_tail.split_first() else { break };
            if terminator == b'\r' {
                match tail.strip_prefix(b"\n") {
                    Some(after_lf) => tail = after_lf,
                    None if tail.is_empty() => self.after_cr = true,
                    None => {}
                }
            }
            rest = tail;
            let outcome = if self.line.is_empty() {
                self.process(line, &mut events)
            } else if self.line.len() + line.len() > self.max_line {
                Err(())
            } else {
                let mut whole = std::mem::take(&mut self.line);
                whole.extend_from_slice(line);
                let outcome = self.process(&whole, &mut events);
                whole.clear();
                self.line = whole; // keep the allocation for the next partial line
                outcome
            };
            if outcome.is_err() {
                return Err(self.overflow(events));
            }
        }
        if self.line.len() + rest.len() > self.max_line {
            return Err(self.overflow(events));
        }
        self.line.extend_from_slice(rest);
        Ok(events)
    }

    fn overflow(&mut self, completed: Vec<SseEvent>) -> SseOverflow {
        *self = SseParser::new(self.max_line);
        SseOverflow { max: self.max_line, completed }
    }

    /// Applies one complete line (without its terminator). `Err` when the event's data outgrows the cap.
    fn process(&mut self, line: &[u8], events: &mut Vec<SseEvent>) -> Result<(), ()> {
        let line = if self.started { line } else { line.strip_prefix(BOM).unwrap_or(line) };
        self.started = true;
        if line.is_empty() {
            if !self.data.is_empty() {
                self.data.pop(); // the `\n` after the last data line
                let event = if self.event.is_empty() {
                    "message".to_owned()
                } else {
                    std::mem::take(&mut self.event)
                };
                events.push(SseEvent { event, data: std::mem::take(&mut self.data) });
            }
            self.event.clear();
            return Ok(());
        }
        if line.starts_with(b":") {
            return Ok(()); // a comment: `:)` on connect, `:thump` heartbeats
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => self.event = String::from_utf8_lossy(value).into_owned(),
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max_line {
                    return Err(());
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.data.push('\n');
            }
            _ => {} // `id`, `retry` and unknown fields mean nothing to us
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Record;
    use crate::ingest::decode::mastodon::decode_event;

    /// A hashtag-stream body as Mastodon sends it: greeting, events, heartbeats, non-ASCII text.
    const SSE_BODY: &str = concat!(
        ":)\n",
        "event: update\n",
        "data: {\"id\":\"1\",\"uri\":\"https://mastodon.social/users/trwnh/statuses/1\",\"content\":\"caf\u{e9} \u{1f602}\",",
        "\"account\":{\"id\":\"14715\",\"acct\":\"trwnh\",\"url\":\"https://mastodon.social/@trwnh\",\"display_name\":\"\u{2d33}\"},",
        "\"mentions\":[],\"tags\":[{\"name\":\"rustlang\"}]}\n",
        "\n",
        ":thump\n",
        "event: delete\n",
        "data: 108914398911648589\n",
        "\n",
        "event: status.update\r\n",
        "data: {\"uri\":\"https://a/2\",\r\n",
        "data: \"account\":{\"acct\":\"b@a\"}}\r\n",
        "\r\n",
        ":thump\n",
        "data:no space\n",
        "\n",
        "event: update\n",
        "data: {\"partial\":"
    );

    fn expected_sse_events() -> Vec<SseEvent> {
        let update = SSE_BODY.lines().nth(2).and_then(|l| l.strip_prefix("data: ")).expect("the update line");
        vec![
            SseEvent { event: "update".into(), data: update.into() },
            SseEvent { event: "delete".into(), data: "108914398911648589".into() },
            SseEvent {
                event: "status.update".into(),
                data: "{\"uri\":\"https://a/2\",\n\"account\":{\"acct\":\"b@a\"}}".into(),
            },
            SseEvent { event: "message".into(), data: "no space".into() },
        ]
    }

    #[test]
    fn sse_body_split_at_every_byte_boundary_gives_the_same_events() {
        let body = SSE_BODY.as_bytes();
        let expected = expected_sse_events();
        for split in 0..=body.len() {
            let mut parser = SseParser::new(1 << 16);
            let mut events = parser.push(&body[..split]).expect("first half");
            events.extend(parser.push(&body[split..]).expect("second half"));
            assert_eq!(events, expected, "split at byte {split}");
        }
        let mut parser = SseParser::new(1 << 16);
        let mut events = Vec::new();
        for byte in body.chunks(1) {
            events.extend(parser.push(byte).expect("one byte"));
        }
        assert_eq!(events, expected, "one byte at a time");
    }

    #[test]
    fn sse_events_decode_into_records() {
        let events = SseParser::new(1 << 16).push(SSE_BODY.as_bytes()).expect("parses");
        let records: Vec<Record> = events
            .iter()
            .flat_map(|e| decode_event(&e.event, e.data.as_bytes(), None).expect("decodes"))
            .collect();
        assert!(matches!(&records[0], Record::Post(p) if p.author.key == "mastodon:trwnh@mastodon.social"
            && p.tags == ["rustlang"] && p.author.name.as_deref() == Some("\u{2d33}")));
        assert!(matches!(&records[1], Record::Delete { id, .. } if id == "108914398911648589"));
        assert!(matches!(&records[2], Record::Edit(p) if p.author.key == "mastodon:b@a"));
        assert_eq!(records[3], Record::Ignored, "an unnamed event is a `message`, unknown to us");
    }

    #[test]
    fn sse_heartbeats_and_the_greeting_produce_no_events() {
        let mut parser = SseParser::new(64);
        assert_eq!(parser.push(b":)\n:thump\n\n:thump\r\n\r\n").expect("comments"), vec![]);
        assert_eq!(
            parser.push(b"event: update\n\n").expect("an event with no data"),
            vec![],
            "not dispatched"
        );
        let events = parser.push(b"data: x\n\n").expect("data");
        assert_eq!(
            events,
            vec![SseEvent { event: "message".into(), data: "x".into() }],
            "the name was reset"
        );
    }

    #[test]
    fn sse_partial_last_line_is_kept_until_completed() {
        let mut parser = SseParser::new(64);
        assert_eq!(parser.push(b"event: delete\ndata: 12").expect("partial"), vec![]);
        assert_eq!(parser.push(b"34").expect("still partial"), vec![]);
        assert_eq!(parser.push(b"\r").expect("line ends, event not yet"), vec![]);
        let events = parser.push(b"\n\n").expect("blank line");
        assert_eq!(
            events,
            vec![SseEvent { event: "delete".into(), data: "1234".into() }],
            "CR LF split across chunks"
        );
    }

    #[test]
    fn sse_lone_cr_ends_a_line_and_a_leading_bom_is_skipped() {
        let events = SseParser::new(64).push(b"\xEF\xBB\xBFevent: a\rdata: 1\rdata: 2\r\r").expect("parses");
        assert_eq!(events, vec![SseEvent { event: "a".into(), data: "1\n2".into() }]);
    }

    #[test]
    fn sse_over_long_line_or_event_is_an_error_that_keeps_completed_events() {
        let mut parser = SseParser::new(16);
        let err = parser.push(b"data: ok\n\n:this comment is far too long").expect_err("over the cap");
        assert_eq!(err.max, 16);
        assert_eq!(err.completed, vec![SseEvent { event: "message".into(), data: "ok".into() }]);

        let mut parser = SseParser::new(16);
        parser.push(b"data: 0123456").expect("within the cap");
        assert!(parser.push(b"789abcdef").is_err(), "a line grown over chunks");

        let mut parser = SseParser::new(16);
        parser.push(b"data: 01234567\n").expect("one data line fits");
        assert!(parser.push(b"data: 89abcdef\n").is_err(), "the event's data does not");

        let mut parser = SseParser::new(16);
        assert!(parser.push(b"data: 0123456789abcdef\n").is_err(), "a complete line over the cap");
    }
}
