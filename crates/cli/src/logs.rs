//! The daemons' log: `serve` and `agent` write through `tracing` to stderr, as text for
//! a terminal or journald, or as JSON (one object per line) for a log pipeline.
//!
//! One line per answered request (method, path, status, caller, peer, milliseconds) and
//! one per ruleset applied (node, revision). Fields are structured in JSON; the text form
//! keeps each message readable on its own, as the lines were before tracing.

use clap::ValueEnum;

/// `--log-format`.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Timestamp, level and message, for people.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, message and fields.
    Json,
}

/// Installs the log for this process (once; a second call keeps the first).
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).with_ansi(false);
    let _ = match format {
        // The message already says what the fields hold: text lines show it alone.
        LogFormat::Text => builder
            .fmt_fields(tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                if field.name() == "message" {
                    write!(w, "{value:?}")
                } else {
                    Ok(())
                }
            }))
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
}
