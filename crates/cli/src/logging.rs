//! Logging: `--log FILE` (default stderr), `--log-format text|json`,
//! `--debug`. JSON lines carry `level`, `msg` and `time` as runc's do, so
//! engines that parse runc's log parse plinth's.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Mutex;

use tracing::Level;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::{GlobalArgs, LogFormat};

/// Where logs go.
pub struct LogTarget {
    /// Logs go to stderr (so errors need not be printed twice).
    pub to_stderr: bool,
}

struct RuncJson;

impl<S, N> FormatEvent<S, N> for RuncJson
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        struct Msg(String);
        impl tracing::field::Visit for Msg {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut msg = Msg(String::new());
        event.record(&mut msg);
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        let line = serde_json::json!({
            "level": level,
            "msg": msg.0,
            "time": plinth_runtime::timestamp(),
        });
        writeln!(writer, "{line}")
    }
}

/// Installs the global subscriber.
pub fn init(g: &GlobalArgs) -> LogTarget {
    let level = if g.debug { Level::DEBUG } else { Level::WARN };
    let file = g.log.as_ref().and_then(|p| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| eprintln!("plinth: --log {}: {e}", p.display()))
            .ok()
    });
    let to_stderr = file.is_none();
    let writer: Box<dyn Write + Send> = match file {
        Some(f) => Box::new(f),
        None => Box::new(std::io::stderr()),
    };
    let writer = Mutex::new(writer);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(writer)
        .with_ansi(false);
    let _ = match g.log_format {
        LogFormat::Json => builder.event_format(RuncJson).try_init(),
        LogFormat::Text => builder.with_target(false).without_time().try_init(),
    };
    LogTarget { to_stderr }
}
