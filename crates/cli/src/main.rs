//! `plinth`: the command-line front end.
//!
//! Parses runc's command line (global flags, then a verb), sets up
//! logging (`--log`, `--log-format`, `--debug`), calls the runtime crate
//! and maps its result to output and an exit code. Nothing here knows how
//! a container is made.

mod check;
mod cli;
mod commands;
mod fleet;
mod image;
mod logging;
mod platform;
mod storage;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let log = logging::init(&cli.global);
    let code = match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = one_line(&e);
            // runc writes errors to its log as well as to stderr, and
            // engines read either.
            if !log.to_stderr {
                tracing::error!("{msg}");
            }
            eprintln!("plinth: {msg}");
            1
        }
    };
    std::process::exit(code);
}

/// The error and its causes on one line, each cause once (library errors
/// already quote their source in their own message).
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg.replace('\n', " ")
}
