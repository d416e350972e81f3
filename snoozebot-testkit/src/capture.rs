//! [`LogCapture`]: keeps what a `tracing` subscriber writes, for tests that assert on logs.

use std::sync::{Arc, Mutex};

/// A writer that keeps everything written to it; clones share one buffer.
///
/// Hand a clone to a subscriber, then read [`contents`](Self::contents):
///
/// ```
/// use std::io::Write;
/// use snoozebot_testkit::LogCapture;
///
/// let capture = LogCapture::default();
/// let mut writer = capture.clone(); // e.g. `fmt().with_writer(move || writer.clone())`
/// writer.write_all(b"INFO loaded provider=mock\n").unwrap();
/// assert!(capture.contents().contains("provider=mock"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Everything written so far, as text (invalid UTF-8 replaced).
    pub fn contents(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
