//! Log lines that request data cannot forge: every control character of a formatted
//! event (a `%0a` decoded into a path, an ESC sequence in a header) is written escaped
//! (`\n`, `\u{1b}`), so one event is always exactly one line.

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;

/// Wraps a writer; each `write` is one formatted event, whose last newline is kept.
pub(crate) struct EscapeControl<W>(pub W);

impl<W: Write> Write for EscapeControl<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(body) => (body, true),
            None => (text.as_ref(), false),
        };
        if !body.chars().any(needs_escape) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = String::with_capacity(body.len() + 16);
        for c in body.chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        if newline {
            out.push('\n');
        }
        self.0.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Standard error, escaped.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct EscapedStderr;

impl<'a> MakeWriter<'a> for EscapedStderr {
    type Writer = EscapeControl<std::io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapeControl(std::io::stderr())
    }
}
