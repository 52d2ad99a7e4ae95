//! The operator commands: list, inspect, resolve, reconcile, follow, check. Each reads or
//! writes through `/v1` (see `client.rs`), prints a table for people or the API's JSON for
//! scripts (`--json`), and returns the process's exit code.

use crate::CliError;
use crate::client::Api;
use crate::table::{amount, render};
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

/// How output is shaped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    /// The API's JSON, one document per line.
    pub json: bool,
}

impl Output {
    pub(crate) fn print(&self, value: &Value, human: impl FnOnce(&Value) -> String) {
        let text = if self.json { format!("{value}\n") } else { human(value) };
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn order_row(o: &Value) -> Vec<String> {
    let flag = if o["needsAttention"].as_bool() == Some(true) {
        " !"
    } else {
        ""
    };
    vec![
        text(&o["outReqNo"]),
        text(&o["transNo"]),
        text(&o["direction"]),
        format!("{}{flag}", text(&o["status"])),
        amount(o["amount"].as_str().unwrap_or("0")),
        text(&o["sends"]),
    ]
}

const ORDER_HEADER: [&str; 6] = ["order", "protocol", "direction", "status", "amount", "sends"];

/// `protopay orders`: a page at a time until `limit` orders (all with `--all`).
pub(crate) async fn orders(
    api: &Api,
    out: Output,
    status: Option<String>,
    protocol: Option<String>,
    limit: usize,
) -> Result<ExitCode, CliError> {
    let mut items: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![format!("limit={}", (limit - items.len()).min(500))];
        // People type `needs-attention` or `success`; the API takes `NEEDS_ATTENTION`, `SUCCESS`.
        let status = status.as_ref().map(|s| s.trim().to_ascii_uppercase().replace('-', "_"));
        query.extend(status.map(|s| format!("status={}", encode(&s))));
        query.extend(protocol.as_ref().map(|t| format!("transNo={}", encode(t))));
        query.extend(cursor.as_ref().map(|c| format!("cursor={}", encode(c))));
        let page = api.get(&format!("/v1/orders?{}", query.join("&"))).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        cursor = page["next"].as_str().map(str::to_owned);
        if cursor.is_none() || items.len() >= limit {
            break;
        }
    }
    out.print(&Value::Array(items), |v| {
        let rows: Vec<Vec<String>> = v.as_array().into_iter().flatten().map(order_row).collect();
        render(&ORDER_HEADER, &rows, &["amount", "sends"])
    });
    Ok(ExitCode::SUCCESS)
}

const AUDIT_HEADER: [&str; 6] = ["seq", "at", "by", "what", "about", "why"];

/// `protopay audit`: what people did, newest first, a page at a time until `limit` records.
pub(crate) async fn audit(api: &Api, out: Output, limit: usize) -> Result<ExitCode, CliError> {
    let mut items: Vec<Value> = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut query = vec![format!("limit={}", (limit - items.len()).min(500))];
        query.extend(before.map(|b| format!("before={b}")));
        let page = api.get(&format!("/v1/audit?{}", query.join("&"))).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        before = page["next"].as_u64();
        if before.is_none() || items.len() >= limit {
            break;
        }
    }
    out.print(&Value::Array(items), |v| {
        let rows: Vec<Vec<String>> = v.as_array().into_iter().flatten().map(audit_row).collect();
        render(&AUDIT_HEADER, &rows, &["seq"])
    });
    Ok(ExitCode::SUCCESS)
}

fn audit_row(e: &Value) -> Vec<String> {
    let about = if e["outReqNo"].is_string() {
        &e["outReqNo"]
    } else {
        &e["transNo"]
    };
    vec![
        text(&e["seq"]),
        text(&e["at"]),
        text(&e["data"]["by"]),
        text(&e["text"]),
        text(about),
        text(&e["data"]["note"]),
    ]
}

/// `protopay show <outReqNo>`: the order, its timeline, its next poll.
pub(crate) async fn show(api: &Api, out: Output, out_req_no: &str) -> Result<ExitCode, CliError> {
    let details = api.get(&format!("/v1/orders/{}", encode(out_req_no))).await?;
    out.print(&details, |d| {
        let o = &d["order"];
        let mut s = render(&ORDER_HEADER, &[order_row(o)], &["amount", "sends"]);
        for (label, key) in [
            ("payee", "payeeName"),
            ("account", "payeeAccount"),
            ("bank", "bankName"),
            ("POS code", "posCode"),
            ("pay order", "payOrderNo"),
            ("last sent", "lastSubmittedAt"),
            ("quiet polls", "quietPolls"),
        ] {
            if !o[key].is_null() {
                s.push_str(&format!("{label:>12}: {}\n", text(&o[key])));
            }
        }
        if let Some(r) = o["refusal"].as_object() {
            s.push_str(&format!(
                "{:>12}: {} {}\n",
                "refused",
                text(&r["code"]),
                text(&r["msg"])
            ));
        }
        s.push_str(&format!("{:>12}: {}\n\n", "next poll", text(&d["nextPoll"])));
        let rows: Vec<Vec<String>> = d["history"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| vec![text(&e["seq"]), text(&e["at"]), text(&e["source"]), text(&e["text"])])
            .collect();
        s.push_str(&render(&["seq", "at", "source", "what happened"], &rows, &["seq"]));
        s
    });
    Ok(ExitCode::SUCCESS)
}

fn ledger_rows(p: &Value) -> Vec<Vec<String>> {
    let ours = &p["ledger"];
    let theirs = &p["remote"];
    let money = |v: &Value| v.as_str().map_or("-".to_owned(), amount);
    vec![
        vec![
            "available".into(),
            money(&ours["available"]),
            money(&theirs["available"]),
        ],
        vec![
            "in transit".into(),
            money(&ours["inTransit"]),
            money(&theirs["inTransit"]),
        ],
        vec!["reserved".into(), money(&ours["reserved"]), "-".into()],
        vec!["paid out".into(), money(&ours["paidOut"]), "-".into()],
        vec!["refunded".into(), money(&ours["refunded"]), "-".into()],
        // The payment system counts both in one figure (`outAmount`): compare like with like.
        vec![
            "paid out + refunded".into(),
            sum(&ours["paidOut"], &ours["refunded"]).map_or("-".to_owned(), |t| amount(&t)),
            money(&theirs["paidOutAndRefunded"]),
        ],
    ]
}

/// The sum of two amounts as the API writes them, if both are amounts.
fn sum(a: &Value, b: &Value) -> Option<String> {
    let parse = |v: &Value| v.as_str().and_then(|s| protopay::Amount::parse(s).ok());
    Some(parse(a)?.checked_add(parse(b)?)?.to_string())
}

/// `protopay protocol <transNo>`: the ledger beside the payment system's last balances.
pub(crate) async fn protocol(api: &Api, out: Output, trans_no: &str) -> Result<ExitCode, CliError> {
    let p = api.get(&format!("/v1/protocols/{}", encode(trans_no))).await?;
    out.print(&p, |p| {
        let mut s = format!(
            "{} ({}, {})\n",
            text(&p["transNo"]),
            text(&p["transDesc"]),
            text(&p["cashierType"])
        );
        s.push_str(&render(
            &["", "protopay", "payment system"],
            &ledger_rows(p),
            &["protopay", "payment system"],
        ));
        s.push_str(&format!(
            "payment system's balances as of {}\n",
            text(&p["remote"]["seenAt"])
        ));
        s
    });
    Ok(ExitCode::SUCCESS)
}

/// `protopay resolve`: a person's decision, after confirmation. The order is read first and
/// the decision names the version read, so that it is refused (nothing recorded) if the
/// order moves between what the person confirmed and the server's commit.
pub(crate) async fn resolve(
    api: &Api,
    out: Output,
    out_req_no: &str,
    status: &str,
    note: &str,
    yes: bool,
) -> Result<ExitCode, CliError> {
    let path = format!("/v1/orders/{}", encode(out_req_no));
    let seen = api.get(&path).await?;
    let version = seen["version"].as_u64();
    let state = text(&seen["order"]["status"]);
    let attention = if seen["order"]["needsAttention"].as_bool() == Some(true) {
        ", needs attention"
    } else {
        ", does not need attention"
    };
    if !yes {
        let terminal = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
        if !terminal {
            return Err(CliError::Usage(
                "resolve changes money: confirm at a terminal, or pass --yes".into(),
            ));
        }
        eprint!(
            "{out_req_no} is {state}{attention}. Record it as {} on your word (\"{note}\")? Funds move as if the payment system had said so. [y/N] ",
            status.to_ascii_uppercase()
        );
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("not resolved");
            return Ok(ExitCode::FAILURE);
        }
    }
    let body = json!({"status": status.to_ascii_uppercase(), "note": note, "version": version});
    let order = api.post(&format!("{path}/resolve"), &body).await?;
    out.print(&order, |o| render(&ORDER_HEADER, &[order_row(o)], &["amount", "sends"]));
    Ok(ExitCode::SUCCESS)
}

/// `protopay reconcile`: the named protocols, or every one (`--all`), with progress on a
/// terminal. Exit 1 if any drifts.
pub(crate) async fn reconcile(api: &Api, out: Output, named: Vec<String>, all: bool) -> Result<ExitCode, CliError> {
    let mut protocols = named;
    if all {
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/protocols?limit=500&cursor={}", encode(c)),
                None => "/v1/protocols?limit=500".to_owned(),
            };
            let page = api.get(&path).await?;
            protocols.extend(
                page["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["transNo"].as_str().map(str::to_owned)),
            );
            cursor = page["next"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
    }
    if protocols.is_empty() {
        return Err(CliError::Usage("name protocols to reconcile, or pass --all".into()));
    }
    let progress = progress(protocols.len() as u64, "reconciling");
    let mut results = Vec::new();
    for trans_no in &protocols {
        progress.set_message(trans_no.clone());
        results.push(
            api.post(&format!("/v1/protocols/{}/reconcile", encode(trans_no)), &json!({}))
                .await?,
        );
        progress.inc(1);
    }
    progress.finish_and_clear();
    let drifting = results
        .iter()
        .filter(|r| r["drift"].as_array().is_some_and(|d| !d.is_empty()))
        .count();
    out.print(&Value::Array(results), |v| {
        let rows: Vec<Vec<String>> = v
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let drift: Vec<String> = r["drift"].as_array().into_iter().flatten().map(text).collect();
                let verdict = if drift.is_empty() {
                    "agrees".to_owned()
                } else {
                    drift.join("; ")
                };
                vec![
                    text(&r["transNo"]),
                    amount(r["ours"]["available"].as_str().unwrap_or("0")),
                    verdict,
                ]
            })
            .collect();
        render(&["protocol", "available", "verdict"], &rows, &["available"])
    });
    Ok(if drifting == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `protopay events`: the consumer's unacknowledged events; with `--follow`, waits for more
/// and acknowledges what it printed.
pub(crate) async fn events(api: &Api, out: Output, consumer: &str, follow: bool) -> Result<ExitCode, CliError> {
    let wait_ms = if follow { 30_000 } else { 0 };
    loop {
        let batch = api
            .get(&format!("/v1/events?consumer={}&waitMs={wait_ms}", encode(consumer)))
            .await?;
        let events = batch["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            out.print(e, |e| {
                format!(
                    "{:>6}  {}  {:<24}  {:<16}  {}\n",
                    text(&e["seq"]),
                    text(&e["at"]),
                    text(&e["outReqNo"]),
                    text(&e["source"]),
                    text(&e["text"])
                )
            });
        }
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(last) = events.last().and_then(|e| e["seq"].as_u64()) {
            api.post("/v1/events/ack", &json!({"consumer": consumer, "seq": last}))
                .await?;
        }
    }
}

/// `protopay check`: every ledger recomputed from its orders, every due time, every listing
/// count; exit 1 on any violation, 2 when there is none but something kept changing and was
/// not judged.
pub(crate) async fn check(api: &Api, out: Output) -> Result<ExitCode, CliError> {
    let spinner = progress(0, "checking every ledger against its orders");
    let report = api.get("/v1/check").await?;
    spinner.finish_and_clear();
    let listed = |field: &str| report[field].as_array().map_or(0, Vec::len);
    let (violations, unsettled) = (listed("violations"), listed("unsettled"));
    out.print(&report, |r| {
        let mut s = format!(
            "{} protocols, {} orders checked: ",
            text(&r["protocols"]),
            text(&r["orders"])
        );
        if violations == 0 {
            s.push_str("every invariant holds\n");
        } else {
            s.push_str(&format!("{violations} violations\n"));
            for v in r["violations"].as_array().into_iter().flatten() {
                s.push_str(&format!("  {}\n", text(v)));
            }
        }
        if unsettled > 0 {
            s.push_str(&format!(
                "{unsettled} not judged (kept changing while read; run it again):\n"
            ));
            for v in r["unsettled"].as_array().into_iter().flatten() {
                s.push_str(&format!("  {}\n", text(v)));
            }
        }
        s
    });
    Ok(match (violations, unsettled) {
        (0, 0) => ExitCode::SUCCESS,
        (0, _) => ExitCode::from(2),
        _ => ExitCode::from(1),
    })
}

/// A progress bar (or spinner, for `len` 0) on a terminal; nothing when piped.
fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = if len == 0 {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::new(len)
    };
    bar.set_prefix(what.to_owned());
    if len > 0
        && let Ok(style) = indicatif::ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} {msg}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// Percent-encode a path or query component (keys are plain, but a typo must not become
/// another route).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
