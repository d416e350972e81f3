//! Bounded, lossy reading of a plugin's output lines: a line longer than the cap is cut (the
//! rest is read and dropped up to its newline), bytes that are not UTF-8 are replaced, and
//! reading goes on until the pipe closes, so a plugin never blocks on a full pipe.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The longest line kept of a plugin's stdout or stderr, in bytes; go-plugin's own host cuts
/// at 64 KiB. The handshake line is a few hundred bytes (with AutoMTLS, about 1 KiB).
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// One line of a plugin's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// The line without its end, at most [`MAX_LINE`] bytes of it, invalid UTF-8 replaced.
    pub(crate) text: String,
    /// How many bytes of the line were dropped past the cap.
    pub(crate) cut: usize,
}

impl Line {
    fn new(mut bytes: Vec<u8>, cut: usize) -> Line {
        if bytes.last() == Some(&b'\r') && cut == 0 {
            bytes.pop();
        }
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
        };
        Line { text, cut }
    }

    /// The line as logged: the text, and what was cut, said.
    pub(crate) fn display(&self) -> String {
        if self.cut == 0 {
            self.text.clone()
        } else {
            format!("{}… [{} more bytes cut]", self.text, self.cut)
        }
    }
}

/// Lines of `reader`, each at most `max` bytes kept.
pub(crate) struct BoundedLines<R> {
    reader: BufReader<R>,
    max: usize,
}

impl<R: AsyncRead + Unpin> BoundedLines<R> {
    pub(crate) fn new(reader: R, max: usize) -> Self {
        BoundedLines {
            reader: BufReader::new(reader),
            max,
        }
    }

    /// The reader underneath (bytes it already handed over may wait in the buffer here).
    pub(crate) fn get_mut(&mut self) -> &mut R {
        self.reader.get_mut()
    }

    /// The next line; `None` at the end of the stream (or when it cannot be read further). A
    /// last line without a newline is still a line.
    pub(crate) async fn next_line(&mut self) -> Option<Line> {
        let mut kept = Vec::new();
        let mut cut = 0usize;
        loop {
            let buffer = match self.reader.fill_buf().await {
                Ok(buffer) => buffer,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => &[],
            };
            if buffer.is_empty() {
                return (!kept.is_empty() || cut > 0).then(|| Line::new(kept, cut));
            }
            let newline = buffer.iter().position(|byte| *byte == b'\n');
            let chunk = &buffer[..newline.unwrap_or(buffer.len())];
            let room = self.max.saturating_sub(kept.len());
            let take = chunk.len().min(room);
            kept.extend_from_slice(&chunk[..take]);
            cut += chunk.len() - take;
            let consumed = chunk.len() + usize::from(newline.is_some());
            self.reader.consume(consumed);
            if newline.is_some() {
                return Some(Line::new(kept, cut));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<Line> {
        let mut reader = BoundedLines::new(input, max);
        let mut found = Vec::new();
        while let Some(line) = reader.next_line().await {
            found.push(line);
        }
        found
    }

    fn line(text: &str, cut: usize) -> Line {
        Line {
            text: text.to_owned(),
            cut,
        }
    }

    #[tokio::test]
    async fn lines_are_cut_at_the_cap_and_reading_goes_on() {
        let mut input = vec![b'x'; 100];
        input.extend_from_slice(b"\nshort\r\nlast");
        assert_eq!(
            lines(&input, 10).await,
            [line("xxxxxxxxxx", 90), line("short", 0), line("last", 0)]
        );
        assert_eq!(
            lines(&input, 10).await[0].display(),
            "xxxxxxxxxx… [90 more bytes cut]"
        );
    }

    #[tokio::test]
    async fn bad_utf8_is_replaced_not_the_end() {
        let found = lines(b"ok \xff\xfe bytes\nafter\n", 64).await;
        assert_eq!(
            found,
            [line("ok \u{fffd}\u{fffd} bytes", 0), line("after", 0)]
        );
    }

    #[tokio::test]
    async fn empty_lines_and_empty_input() {
        assert_eq!(lines(b"\n\n", 8).await, [line("", 0), line("", 0)]);
        assert!(lines(b"", 8).await.is_empty());
    }
}
