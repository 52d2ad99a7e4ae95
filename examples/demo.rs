//! The main job: a whole escrow flow against the built-in simulator, over real loopback
//! HTTP, on the embedded sled storage. Prints a timeline and the final ledger next to the
//! simulator's balances; exits 0 only if they agree.
//!
//! With `--postgres [URL]` (the URL defaults to `PROTOPAY_PG_URL`) it tells the same story
//! with two engine instances on one PostgreSQL, callbacks alternating between them through a
//! balancer, and the second instance stopped halfway.
//!
//! ```text
//! cargo run --example demo [-- DATA_DIR]
//! cargo run --example demo -- --postgres postgres://user@localhost/db
//! ```

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let postgres = match args.iter().position(|a| a == "--postgres") {
        Some(at) => match args
            .get(at + 1)
            .cloned()
            .or_else(|| std::env::var("PROTOPAY_PG_URL").ok())
        {
            Some(url) => Some(url),
            None => {
                eprintln!("--postgres needs a URL (or PROTOPAY_PG_URL)");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let data_dir = args
        .first()
        .filter(|_| postgres.is_none())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("protopay-demo-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&data_dir);
    let started = std::time::Instant::now();
    let mut stack = match postgres {
        Some(url) => {
            let schema = format!("demo_{}", std::process::id());
            println!("protopay demo — two instances on PostgreSQL, schema {schema}");
            let store = harness::Store::Postgres { url, schema };
            harness::Stack::start_with(store, 2, 2026).await
        }
        None => {
            println!("protopay demo — sled store in {}", data_dir.display());
            harness::Stack::start(&data_dir, 2026).await
        }
    };
    println!(
        "simulator on {}, callbacks to http://{}/protopay/notify\n",
        stack.sim_url, stack.callback_addr
    );

    let story = harness::escrow_story(&mut stack).await;

    let events = stack.engine().events_after(0, 10_000).await.unwrap_or_default();
    let t0 = events.first().map(|e| e.at);
    let mut chapters = story.chapters.iter().peekable();
    for e in &events {
        while let Some((title, _)) = chapters.next_if(|(_, first)| e.seq >= *first) {
            println!("\n{title}");
            println!("{:>8}  {:<18} {:<44} source", "time", "order", "what happened");
        }
        let ms = t0.map_or(0, |t0| (e.at - t0).num_milliseconds());
        let order = e.out_req_no.clone().or_else(|| e.trans_no.clone()).unwrap_or_default();
        println!("{:>6}ms  {:<18} {:<44} {}", ms, order, e.kind.to_string(), e.source);
    }

    let protocols = [story.pos_protocol.as_str(), story.qp_protocol.as_str()];
    println!("\n{:<18} {:>26} {:>26}", "balances", "protopay ledger", "simulator");
    for trans_no in protocols {
        let ours = stack
            .engine()
            .protocol(trans_no)
            .await
            .map(|p| p.ledger)
            .unwrap_or_default();
        let theirs = stack.sim.balances(trans_no).unwrap_or_default();
        println!("{trans_no}");
        println!(
            "  {:<16} {:>26} {:>26}",
            "available",
            ours.available.to_string(),
            theirs.available.to_string()
        );
        println!(
            "  {:<16} {:>26} {:>26}",
            "in transit",
            ours.in_transit.to_string(),
            theirs.in_transit.to_string()
        );
        println!(
            "  {:<16} {:>26} {:>26}",
            "reserved",
            ours.reserved.to_string(),
            theirs.reserved.to_string()
        );
        let paid = ours
            .paid_out
            .checked_add(ours.refunded)
            .map(|a| a.to_string())
            .unwrap_or_default();
        println!(
            "  {:<16} {:>26} {:>26}",
            "paid out+refund",
            paid,
            theirs.paid_out.to_string()
        );
    }
    let payouts = stack.sim.stats().payouts;
    println!("\npayouts sent per order (simulator's count): {payouts:?}");
    for key in [
        &story.payout,
        &story.refund,
        &story.failed_payout,
        &story.lost_reply_payout,
    ] {
        if let Ok(o) = stack.engine().order(key).await {
            println!("  {key}: {} after {} send(s)", o.status, o.attempts.sends);
        }
    }

    let problems = stack.disagreements(&protocols).await;
    stack.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    if problems.is_empty() {
        println!(
            "\nOK: every order and balance agrees with the simulator ({:.1}s)",
            started.elapsed().as_secs_f64()
        );
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            println!("DISAGREE: {p}");
        }
        ExitCode::FAILURE
    }
}
