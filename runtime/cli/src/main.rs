//! The `wrt` command.

mod commands;

use std::io::IsTerminal;

use clap::Parser;
use commands::LogFormat;

fn main() -> std::process::ExitCode {
    let cli = commands::Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WRT_LOG")
                // What the guest prints (rate-limited) is the user's own output: shown.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,wrt::guest=info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a file or a journal.
        .with_ansi(std::io::stderr().is_terminal());
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match cli.run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
