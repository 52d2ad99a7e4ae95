//! `protopay`: the escrow engine as a program.
//!
//! `protopay serve --config protopay.toml` runs the sidecar: the engine on its store, the
//! callback receiver, the poller, the `/v1` JSON API, `/metrics`, health checks and
//! (optionally) webhook delivery — for hosts written in any language. See `config.rs` for
//! the file and the environment variables, and the README's "Run it as a service".
//!
//! `protopay backup` copies a running (or stopped) sled store; `protopay restore` installs a
//! copy after checking it (`backup.rs`).
//!
//! The operator commands (`orders`, `show`, `protocol`, `resolve`, `reconcile`, `events`,
//! `check`) talk to a running server with `--url` (token from `PROTOPAY_API_TOKEN` or
//! `--token`), or open the store of `--config` directly when no server holds it.
// Outside data never meets an `unwrap` here; tests may use it freely.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod backup;
mod client;
mod commands;
mod config;
mod error;
mod serve;
mod table;

pub(crate) use error::CliError;

/// mimalloc rather than the system allocator: under load sled copies a tree node per write
/// and a commit builds its keys and values afresh, and glibc's allocator was a quarter of
/// the CPU of callbacks on sled (README, "The sled commit path"). An application embedding
/// the library chooses its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// protopay: escrow payments through the LFT agreement-payment API (协议支付).
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// A running server's address (operator commands); without it they open the store of
    /// `--config` directly.
    #[arg(long, global = true, env = "PROTOPAY_URL")]
    url: Option<String>,
    /// The server's API token (operator commands).
    #[arg(long, global = true, env = "PROTOPAY_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The configuration file (for `serve`, and for operator commands without `--url`).
    #[arg(long, global = true, default_value = "protopay.toml")]
    config: PathBuf,
    /// JSON for scripts instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sidecar: engine, callback receiver, poller, `/v1` API, `/healthz`, `/readyz`.
    /// Prints `protopay listening on http://ADDR` once ready; stops cleanly on SIGTERM or
    /// Ctrl-C (in-flight commands and callbacks finish and are stored) and exits 0.
    Serve,
    /// List orders, a page at a time: `--status needs-attention`, `--protocol T`.
    Orders {
        /// A status (`submitted`, `success`, …) or `needs-attention`.
        #[arg(long)]
        status: Option<String>,
        /// Only this protocol's orders.
        #[arg(long)]
        protocol: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Every one.
        #[arg(long, conflicts_with = "limit")]
        all: bool,
    },
    /// One order: its state, payee, timeline and next poll.
    Show {
        /// The order's `outReqNo`.
        out_req_no: String,
    },
    /// One protocol: protopay's ledger beside the payment system's last balances.
    Protocol {
        /// The protocol's `transNo`.
        trans_no: String,
    },
    /// Record a person's decision on an order that needs attention (asks first unless `--yes`).
    Resolve {
        /// The order's `outReqNo`.
        out_req_no: String,
        /// What the payment system's records (checked out of band) say.
        #[arg(long = "as", value_parser = ["success", "failure"])]
        outcome: String,
        /// Who checked what: kept in the order's history.
        #[arg(long)]
        note: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// What people did, newest first: each decision and reconciliation, who, when and why.
    Audit {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Compare protocols' ledgers with the payment system's balances (exit 1 on drift).
    Reconcile {
        /// Protocols to reconcile.
        trans_no: Vec<String>,
        /// Every protocol.
        #[arg(long)]
        all: bool,
    },
    /// A consumer's unacknowledged events; `--follow` waits for more and acknowledges them.
    Events {
        /// The consumer (a cursor of its own; the default one is the CLI's).
        #[arg(long, default_value = "protopay-cli")]
        consumer: String,
        /// Keep waiting, acknowledging what was printed.
        #[arg(long)]
        follow: bool,
    },
    /// Recompute every ledger from its orders and check every invariant: exit 1 on a violation,
    /// 2 when none was found but some records kept changing and were not judged (run it again).
    Check,
    /// Copy the sled store, while it runs, into a new directory: with `--url` the server writes
    /// it (a path on its machine); without, the store of `--config` is opened here.
    Backup {
        /// A new (or empty) directory.
        #[arg(long)]
        to: PathBuf,
    },
    /// Install a backup as the store of `--config`, after checking every invariant on a copy
    /// of it. The server must be stopped and the old store moved aside.
    Restore {
        /// The backup's directory (left as it is).
        #[arg(long)]
        from: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "protopay=info,deadpool=error,warn".into()),
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
    let result: Result<ExitCode, CliError> = runtime.block_on(run(cli));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("protopay: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    if let Command::Serve = cli.command {
        let settings = config::load(&cli.config, |name| std::env::var(name).ok())?;
        serve::run(settings).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let out = commands::Output { json: cli.json };
    match &cli.command {
        Command::Backup { to } => {
            let server = match &cli.url {
                Some(url) => Some((
                    url.as_str(),
                    cli.token.clone().ok_or(CliError::MissingEnv("PROTOPAY_API_TOKEN"))?,
                )),
                None => None,
            };
            return backup::backup(server, &cli.config, to, out).await;
        }
        Command::Restore { from } => {
            if cli.url.is_some() {
                return Err(CliError::Usage(
                    "restore works on the store itself: stop the server and run it without --url".into(),
                ));
            }
            return backup::restore(&cli.config, from, out).await;
        }
        _ => {}
    }
    let api = match &cli.url {
        Some(url) => {
            let token = cli.token.clone().ok_or(CliError::MissingEnv("PROTOPAY_API_TOKEN"))?;
            client::Api::remote(url, token)?
        }
        None => client::Api::local(&cli.config).await?,
    };
    let result = match cli.command {
        Command::Serve | Command::Backup { .. } | Command::Restore { .. } => Ok(ExitCode::SUCCESS),
        Command::Orders {
            status,
            protocol,
            limit,
            all,
        } => commands::orders(&api, out, status, protocol, if all { usize::MAX } else { limit }).await,
        Command::Show { out_req_no } => commands::show(&api, out, &out_req_no).await,
        Command::Protocol { trans_no } => commands::protocol(&api, out, &trans_no).await,
        Command::Resolve {
            out_req_no,
            outcome,
            note,
            yes,
        } => commands::resolve(&api, out, &out_req_no, &outcome, &note, yes).await,
        Command::Reconcile { trans_no, all } => commands::reconcile(&api, out, trans_no, all).await,
        Command::Events { consumer, follow } => commands::events(&api, out, &consumer, follow).await,
        Command::Check => commands::check(&api, out).await,
        Command::Audit { limit } => commands::audit(&api, out, limit).await,
    };
    api.close().await?;
    result
}
