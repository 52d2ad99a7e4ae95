//! `protopay-sim`: the simulator as an HTTP server, for tests, demos and staging setups.
// Outside data never meets an `unwrap` here; tests may use it freely.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use clap::Parser;
use protopay_engine::{Clock, Md5Key};
use protopay_sim::server::{ServerOptions, serve};
use protopay_sim::{HttpSink, Sim, SimConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A faithful, adversarial fake of the LFT agreement-payment system (协议支付).
///
/// Serves POST /api/protocol/{create,find,prepay,posclose,inquery,outpay,outquery,querybankcnaps}
/// exactly as `docs/protocol.md` describes, and sends signed callbacks to the notify URLs each order
/// names, retrying until they are answered with success.
///
/// Admin API:
///   POST /sim/inbound/{outReqNo}/pay      {"status":"SUCCESS"|"FAILURE"}
///   POST /sim/inbound/{outReqNo}/arrive
///   POST /sim/outbound/{outReqNo}/settle  {"status":"SUCCESS"|"FAILURE"}
///   POST /sim/faults   e.g. {"drop_callback":{"probability":0.2},"timeout_after_commit":{"once":1},"no_dedupe":true,"delay_ms":3000}
///        (faults: drop_callback, duplicate_callback, delay_callback, reorder_callback, http_500,
///         timeout_after_commit, corrupt_sign, refuse_connection, and late_arrival with late_ms
///         for the in-process transport only; each {"probability":p,"once":n})
///   POST /sim/fail-next/{endpoint}  "server_error"|"timeout_after_commit"|"connection_refused" (the next call only)
///   GET  /sim/faults, /sim/stats (payouts per outReqNo, callbacks, balances), /sim/orders,
///        /sim/received (the request log: endpoint, outReqNo, handled)
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8700")]
    listen: SocketAddr,
    /// The business system's appId.
    #[arg(long)]
    app_id: String,
    /// The shared MD5 key.
    #[arg(long, env = "PROTOPAY_SIM_KEY", hide_env_values = true)]
    key: String,
    /// Seed for codes, order numbers, faults and the schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Move orders along by themselves on a seeded random schedule.
    #[arg(long)]
    auto: bool,
    /// Timeout of each callback POST, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    callback_timeout_ms: u64,
    /// How long a "timeout after commit" fault holds the answer, in milliseconds.
    #[arg(long, default_value_t = 120_000)]
    hold_ms: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "protopay_sim=info".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let mut config = SimConfig::new(&args.app_id, Md5Key::new(args.key));
    config.seed = args.seed;
    config.auto = args.auto;
    let sim = Sim::new(config, Clock::system());
    let sink = match HttpSink::new(Duration::from_millis(args.callback_timeout_ms)) {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("protopay-sim: cannot build the HTTP client: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("protopay-sim: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    say(&format!(
        "protopay-sim listening on http://{addr} (appId {}, seed {})",
        args.app_id, args.seed
    ));
    let background = sim.spawn(Arc::new(sink));
    let options = ServerOptions {
        hold: Duration::from_millis(args.hold_ms),
    };
    let result = serve(listener, sim, options, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    background.stop().await;
    match result {
        Ok(()) => {
            say("protopay-sim stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("protopay-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A line on stdout; a closed stdout (the reader went away) is not worth a panic.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}
