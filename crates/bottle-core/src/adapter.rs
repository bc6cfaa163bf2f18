//! What every adapter needs and no engine owns, tested once here: reassembling log lines from
//! an engine's output frames, rendering a [`LabelSelector`] into engine filters and into words,
//! and keeping exactly the selected objects of a listing (engines' label filters are not all
//! exact). An adapter's engine-specific code stays in the adapter.

use std::fmt;

use crate::runtime::{ContainerInfo, LabelSelector, Labels, NetworkInfo};

/// Which output stream of a container a chunk of log output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// Reassembles an engine's log frames into lines, for
/// [`ContainerRuntime::logs`](crate::ContainerRuntime::logs).
///
/// Frames are chunks of output, not lines: a line can span frames and a frame can hold several
/// lines. A partial line is kept per stream, so stdout and stderr do not mix mid-line. Each line
/// reaches the sink without its `\n` (or `\r\n`), invalid UTF-8 replaced.
#[derive(Debug, Default)]
pub struct LogLines {
    partial: [Vec<u8>; 2],
}

impl LogLines {
    pub fn new() -> Self {
        LogLines::default()
    }

    /// Adds a frame of `stream` and hands each line it completes to `sink`. Returns `false`
    /// once the sink has asked to stop (the caller stops reading).
    pub fn push(
        &mut self,
        stream: LogStream,
        bytes: &[u8],
        sink: &mut (dyn FnMut(String) -> bool + Send),
    ) -> bool {
        let buf = &mut self.partial[stream as usize];
        buf.extend_from_slice(bytes);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            if !sink(line_text(&line)) {
                return false;
            }
        }
        true
    }

    /// Hands the last, unterminated line of each stream (if any) to `sink`, at the end of the
    /// output.
    pub fn finish(self, sink: &mut (dyn FnMut(String) -> bool + Send)) {
        for rest in self.partial.iter().filter(|b| !b.is_empty()) {
            if !sink(line_text(rest)) {
                break;
            }
        }
    }
}

/// A line without its `\n` (or `\r\n`), invalid UTF-8 replaced.
fn line_text(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

/// An engine object that carries labels (what a [`LabelSelector`] selects).
pub trait Labelled {
    fn labels(&self) -> &Labels;
}

impl Labelled for NetworkInfo {
    fn labels(&self) -> &Labels {
        &self.labels
    }
}

impl Labelled for ContainerInfo {
    fn labels(&self) -> &Labels {
        &self.labels
    }
}

impl LabelSelector {
    /// The selector as engines' label filters: `key` or `key=value`, every one of which must
    /// match (Docker's `label` filter, libpod's `label` filter). Empty for a selector that
    /// selects everything.
    pub fn label_filters(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            })
            .collect()
    }

    /// The items of a listing this selector selects, in their order. Adapters pass every
    /// listing through it: some engines match label keys as patterns, or ignore a filter they
    /// do not know, and the contract wants exactly the selected objects.
    pub fn keep<T: Labelled>(&self, items: impl IntoIterator<Item = T>) -> Vec<T> {
        items
            .into_iter()
            .filter(|item| self.matches(item.labels()))
            .collect()
    }
}

/// The selector in words, for messages: `labelled a=b, c`, or `(no label filter)`.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(no label filter)")
        } else {
            write!(f, "labelled {}", self.label_filters().join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(frames: &[(LogStream, &[u8])], stop_after: usize) -> Vec<String> {
        let mut lines = Vec::new();
        let mut sink = |line: String| {
            lines.push(line);
            lines.len() < stop_after
        };
        let mut splitter = LogLines::new();
        let mut going = true;
        for (stream, bytes) in frames {
            going = splitter.push(*stream, bytes, &mut sink);
            if !going {
                break;
            }
        }
        if going {
            splitter.finish(&mut sink);
        }
        lines
    }

    #[test]
    fn lines_are_reassembled_across_frames_and_streams_do_not_mix() {
        use LogStream::{Stderr, Stdout};
        let frames: &[(LogStream, &[u8])] = &[
            (Stdout, b"one\ntw"),
            (Stderr, b"err"),
            (Stdout, b"o\r\nthree\nfour\n"),
            (Stderr, b"or\n"),
            (Stdout, b"tail without newline"),
            (Stderr, b"\xff\n"),
        ];
        assert_eq!(
            collect(frames, usize::MAX),
            [
                "one",
                "two",
                "three",
                "four",
                "error",
                "\u{fffd}",
                "tail without newline"
            ]
        );
    }

    #[test]
    fn a_sink_that_stops_gets_no_more_lines() {
        let frames: &[(LogStream, &[u8])] = &[
            (LogStream::Stdout, b"a\nb\nc\n"),
            (LogStream::Stdout, b"d\n"),
        ];
        assert_eq!(collect(frames, 2), ["a", "b"]);
    }

    #[test]
    fn selectors_render_as_filters_and_words_and_keep_only_exact_matches() {
        let sel = LabelSelector::all().eq("a", "1").has("b");
        assert_eq!(sel.label_filters(), ["a=1", "b"]);
        assert_eq!(sel.to_string(), "labelled a=1, b");
        assert!(LabelSelector::all().label_filters().is_empty());
        assert_eq!(LabelSelector::all().to_string(), "(no label filter)");

        let network = |name: &str, labels: &[(&str, &str)]| NetworkInfo {
            name: name.into(),
            id: name.into(),
            subnets: Vec::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let listed = vec![
            network("both", &[("a", "1"), ("b", "x")]),
            network("wrong-value", &[("a", "2"), ("b", "x")]),
            // A pattern match of the key, as some engines do.
            network("prefix-key", &[("a", "1"), ("bb", "x")]),
            network("also", &[("b", ""), ("a", "1")]),
        ];
        let kept: Vec<String> = sel.keep(listed).into_iter().map(|n| n.name).collect();
        assert_eq!(kept, ["both", "also"]);
    }
}
