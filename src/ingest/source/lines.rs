//! Splitting a streamed body into lines: chunk boundaries fall anywhere (inside a line, between `\r`
//! and `\n`, inside a UTF-8 character), and a line without a newline must not grow without bound.

/// A line longer than the cap: the stream is broken, end the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a line grew past {0} bytes without a newline")]
pub(crate) struct LineTooLong(pub usize);

/// Buffers chunks and yields complete, non-empty lines (without `\r\n`); keep-alive blank lines are
/// counted, not yielded.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
    pub keepalives: u64,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> LineSplitter {
        LineSplitter { buf: Vec::new(), max: max_line, keepalives: 0 }
    }

    /// Adds a chunk; returns the complete lines it finished.
    ///
    /// # Errors
    /// [`LineTooLong`] when the unfinished line exceeds the cap.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, LineTooLong> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.buf.extend_from_slice(&rest[..i]);
            rest = &rest[i + 1..];
            let line = std::mem::take(&mut self.buf);
            let trimmed = line.trim_ascii();
            if trimmed.is_empty() {
                self.keepalives += 1;
            } else if trimmed.len() == line.len() {
                lines.push(line);
            } else {
                lines.push(trimmed.to_vec());
            }
        }
        self.buf.extend_from_slice(rest);
        if self.buf.len() > self.max {
            self.buf.clear();
            return Err(LineTooLong(self.max));
        }
        Ok(lines)
    }

    /// The unfinished tail, if any (a stream that ended mid-line).
    pub(crate) fn take_partial(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.buf);
        (!rest.trim_ascii().is_empty()).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_every_boundary_come_out_whole() {
        let body = "{\"a\":1}\r\n\r\n{\"b\":\"é\"}\r\n\r\n\r\n{\"c\":3}\r\n".as_bytes();
        for cut in 0..=body.len() {
            let mut s = LineSplitter::new(1024);
            let mut got = s.push(&body[..cut]).unwrap();
            got.extend(s.push(&body[cut..]).unwrap());
            let got: Vec<String> = got.into_iter().map(|l| String::from_utf8(l).unwrap()).collect();
            assert_eq!(got, ["{\"a\":1}", "{\"b\":\"é\"}", "{\"c\":3}"], "cut at {cut}");
            assert_eq!(s.keepalives, 3);
        }
    }

    #[test]
    fn an_endless_line_is_an_error_not_unbounded_memory() {
        let mut s = LineSplitter::new(10);
        assert!(s.push(b"0123456").unwrap().is_empty());
        assert_eq!(s.push(b"789abc"), Err(LineTooLong(10)));
        assert_eq!(s.push(b"ok\n").unwrap(), vec![b"ok".to_vec()], "usable again after the error");
    }

    #[test]
    fn a_partial_last_line_is_kept_until_asked_for() {
        let mut s = LineSplitter::new(100);
        assert_eq!(s.push(b"{\"a\":1}\n{\"trunc").unwrap().len(), 1);
        assert_eq!(s.take_partial(), Some(b"{\"trunc".to_vec()));
        assert_eq!(s.take_partial(), None);
    }
}
