//! `protopay`: the escrow engine as a program.
//!
//! `protopay serve --config protopay.toml` runs the sidecar: the engine on its store, the
//! callback receiver, the poller, the `/v1` JSON API, health checks and (optionally) webhook
//! delivery — for hosts written in any language. See `config.rs` for the file and the
//! environment variables, and the README's "Run it as a service".

mod config;
mod error;
mod serve;

pub(crate) use error::CliError;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// protopay: escrow payments through the LFT agreement-payment API (协议支付).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sidecar: engine, callback receiver, poller, `/v1` API, `/healthz`, `/readyz`.
    /// Prints `protopay listening on http://ADDR` once ready; stops cleanly on SIGTERM or
    /// Ctrl-C (in-flight commands and callbacks finish and are stored) and exits 0.
    Serve {
        /// The configuration file.
        #[arg(long, default_value = "protopay.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "protopay=info,warn".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("protopay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), CliError> = runtime.block_on(async {
        match cli.command {
            Command::Serve { config } => {
                let settings = config::load(&config, |name| std::env::var(name).ok())?;
                serve::run(settings).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("protopay: {e}");
            ExitCode::FAILURE
        }
    }
}
