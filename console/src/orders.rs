//! Orders: the filtered list (and its CSV export), one order with its timeline and evidence,
//! and a person's decision on one order or several.

use crate::error::ConsoleError;
use crate::overview::{listing_label, listing_param};
use crate::session::{Action, SignedIn};
use crate::{Console, page};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::StreamExt;
use maud::{Markup, html};
use protopay_engine::domain::{Listing, Order, OrderKind, Status};
use protopay_engine::storage::{Exchange, Message, OrderQuery};
use protopay_engine::{Decision, Engine, Sensitive};
use serde::Deserialize;
use serde_json::json;

/// Orders shown per page.
const PAGE_ORDERS: usize = 50;

/// The most orders one page reads to find its matches when filtering by direction or time
/// (filters the store has no index for): a page may then hold fewer, with a link on.
const PAGE_SCAN: usize = 2_000;

/// How many orders the store is asked for at a time.
const READ_BATCH: usize = 500;

/// The list's filters, as the query string carries them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    listing: Option<String>,
    protocol: Option<String>,
    /// `in` or `out`.
    direction: Option<String>,
    /// Last sent on or after this day (`2026-11-29`, UTC).
    from: Option<String>,
    /// Last sent on or before this day.
    to: Option<String>,
    /// The last `outReqNo` of the previous page.
    after: Option<String>,
}

/// The filters, checked.
#[derive(Clone)]
struct Filter {
    query: OrderQuery,
    inbound: Option<bool>,
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

impl Filters {
    fn checked(&self) -> Result<Filter, ConsoleError> {
        let listing = match self.listing.as_deref().filter(|l| !l.is_empty()) {
            None => None,
            Some(name) => Some(Listing::from_name(name).ok_or(ConsoleError::Invalid("no such listing"))?),
        };
        let inbound = match self.direction.as_deref() {
            None | Some("") => None,
            Some("in") => Some(true),
            Some("out") => Some(false),
            Some(_) => return Err(ConsoleError::Invalid("the direction is in or out")),
        };
        let day = |d: &Option<String>, days: i64| -> Result<Option<DateTime<Utc>>, ConsoleError> {
            match d.as_deref().filter(|d| !d.is_empty()) {
                None => Ok(None),
                Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.checked_add_days(chrono::Days::new(days as u64)))
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| Some(t.and_utc()))
                    .ok_or(ConsoleError::Invalid("days are written 2026-11-29")),
            }
        };
        Ok(Filter {
            query: OrderQuery {
                listing,
                trans_no: self.protocol.clone().filter(|t| !t.trim().is_empty()),
            },
            inbound,
            from: day(&self.from, 0)?,
            until: day(&self.to, 1)?,
        })
    }

    /// The same filters as a query string, without the cursor.
    fn to_query(&self) -> String {
        let pairs: Vec<(&str, &str)> = [
            ("listing", &self.listing),
            ("protocol", &self.protocol),
            ("direction", &self.direction),
            ("from", &self.from),
            ("to", &self.to),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| (k, v)))
        .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

impl Filter {
    /// Whether some filter is applied here rather than by the store's indexes.
    fn filters_here(&self) -> bool {
        self.inbound.is_some() || self.from.is_some() || self.until.is_some()
    }

    fn admits(&self, order: &Order) -> bool {
        let sent = order.attempts.last_sent_at;
        self.inbound.is_none_or(|inbound| order.inbound().is_some() == inbound)
            && self.from.is_none_or(|from| sent.is_some_and(|s| s >= from))
            && self.until.is_none_or(|until| sent.is_some_and(|s| s < until))
    }

    /// Up to `want` matching orders after `after`, reading at most `scan`; and where to go on
    /// from (`None`: nothing more).
    async fn page(
        &self,
        engine: &Engine,
        after: Option<String>,
        want: usize,
        scan: usize,
    ) -> Result<(Vec<Order>, Option<String>), ConsoleError> {
        let mut found = Vec::new();
        let mut cursor = after;
        let mut scanned = 0;
        // Filtered here, many may be read for a few; filtered by the store, a page is a page.
        let batch = if self.filters_here() { READ_BATCH } else { want };
        loop {
            let page = engine.orders(&self.query, cursor.as_deref(), batch).await?;
            for order in page.items {
                scanned += 1;
                cursor = Some(order.out_req_no().to_owned());
                if self.admits(&order) {
                    found.push(order);
                    if found.len() == want {
                        return Ok((found, cursor));
                    }
                }
            }
            if page.next.is_none() {
                return Ok((found, None));
            }
            if scanned >= scan {
                return Ok((found, cursor));
            }
        }
    }
}

/// `GET /console/orders`.
pub(crate) async fn list(
    State(console): State<Console>,
    who: SignedIn,
    Query(filters): Query<Filters>,
) -> Result<Markup, ConsoleError> {
    let filter = filters.checked()?;
    let (orders, next) = filter
        .page(&console.engine, filters.after.clone(), PAGE_ORDERS, PAGE_SCAN)
        .await?;
    let query = filters.to_query();
    let flagged_list = filter.query.listing == Some(Listing::NeedsAttention);
    let selectable = flagged_list && who.operates() && !orders.is_empty();
    let selected = |l: Listing| filter.query.listing == Some(l);
    let body = html! {
        h1 { "Orders" }
        form.filters method="get" action="/console/orders" {
            label { "Listing"
                select name="listing" {
                    option value="" { "all" }
                    @for l in Listing::ALL { option value=(listing_param(l)) selected[selected(l)] { (listing_label(l)) } }
                }
            }
            label { "Protocol" input name="protocol" value=[filters.protocol.as_deref()]; }
            label { "Direction"
                select name="direction" {
                    option value="" { "both" }
                    option value="in" selected[filter.inbound == Some(true)] { "in" }
                    option value="out" selected[filter.inbound == Some(false)] { "out" }
                }
            }
            label { "Sent from" input type="date" name="from" value=[filters.from.as_deref()]; }
            label { "to" input type="date" name="to" value=[filters.to.as_deref()]; }
            button type="submit" { "Filter" }
            a href={ "/console/orders.csv?" (query) } { "Export CSV" }
        }
        form method="post" action="/console/resolve" {
            @if selectable { (page::csrf(&who)) }
            table {
                thead { tr {
                    @if selectable { th { } }
                    th { "Order" } th { "Protocol" } th { "Direction" } th { "State" } th.num { "Amount" } th.num { "Sends" } th { "Last sent" } th { "Payee" }
                } }
                tbody {
                    @for o in &orders {
                        tr {
                            @if selectable { td { input type="checkbox" name="o" value=(o.out_req_no()) aria-label="select"; } }
                            td { a href={ "/console/orders/" (o.out_req_no()) } { (o.out_req_no()) } }
                            td { a href={ "/console/protocols/" (o.trans_no()) } { (o.trans_no()) } }
                            td { (direction(o)) }
                            td { (page::state(o)) }
                            td.num { (o.amount().to_string()) }
                            td.num { (o.attempts.sends) }
                            td { (o.attempts.last_sent_at.map(page::time).unwrap_or_default()) }
                            td { (payee(o, false).0) }
                        }
                    }
                }
            }
            @if orders.is_empty() { p.quiet { "No order matches." } }
            @if selectable {
                p { button type="submit" name="step" value="review" { "Decide the selected orders…" } }
            }
        }
        @if let Some(next) = next {
            p { a href={ "/console/orders?" (query) "&" (serde_urlencoded::to_string([("after", next.as_str())]).unwrap_or_default()) } { "Next page →" } }
        }
    };
    Ok(page::layout("Orders", Some(&who), body))
}

fn direction(o: &Order) -> String {
    match o.out_type() {
        None => "in".to_owned(),
        Some(t) => format!("out ({t})"),
    }
}

/// An order's payee or payer, as `who` may see it: name, then account (empty for inbound).
fn payee(o: &Order, shown: bool) -> (String, String, String) {
    let text = |v: &Option<Sensitive>| v.as_ref().map(|v| page::personal(v, shown)).unwrap_or_default();
    match &o.kind {
        OrderKind::Outbound(out) => (
            page::personal(&out.request.bank_acc_name, shown),
            page::personal(&out.request.bank_acc_num, shown),
            out.request.bank_name.clone(),
        ),
        OrderKind::Inbound(i) => (text(&i.request.qp_user_name), String::new(), String::new()),
    }
}

/// `GET /console/orders.csv`: every order the filters match, streamed a page at a time;
/// personal data masked unless the role may see it.
pub(crate) async fn export(
    State(console): State<Console>,
    who: SignedIn,
    Query(filters): Query<Filters>,
) -> Result<Response, ConsoleError> {
    let filter = filters.checked()?;
    let shown = who.operates();
    tracing::info!(operator = %who.name, unmasked = shown, "orders exported as CSV");
    let header_row = csv_row(&[
        "outReqNo",
        "transNo",
        "direction",
        "status",
        "amount",
        "sends",
        "lastSentAt",
        "needsAttention",
        "payee",
        "payeeAccount",
        "bank",
    ]);
    let start = Some((console.engine.clone(), filter, None::<String>));
    let pages = futures_util::stream::unfold(start, move |state| async move {
        let (engine, filter, after) = state?;
        match filter.page(&engine, after, READ_BATCH, READ_BATCH).await {
            Ok((orders, next)) => {
                let rows: String = orders.iter().map(|o| order_row(o, shown)).collect();
                Some((Ok::<_, std::io::Error>(rows), next.map(|n| (engine, filter, Some(n)))))
            }
            Err(e) => {
                tracing::warn!(error = %e, "CSV export stopped");
                let stopped = std::io::Error::other("the export stopped: the store did not answer");
                Some((Err(stopped), None))
            }
        }
    });
    let body = futures_util::stream::once(async move { Ok(header_row) }).chain(pages);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"orders.csv\""),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

fn order_row(o: &Order, shown: bool) -> String {
    let (name, account, bank) = payee(o, shown);
    csv_row(&[
        o.out_req_no(),
        o.trans_no(),
        &direction(o),
        &o.state_label(),
        &o.amount().to_string(),
        &o.attempts.sends.to_string(),
        &o.attempts.last_sent_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        if o.attempts.needs_attention { "yes" } else { "no" },
        &name,
        &account,
        &bank,
    ])
}

/// One CSV line (RFC 4180), each cell quoted when it must be, and a cell a spreadsheet would
/// run as a formula (`=`, `+`, `-`, `@`) prefixed with `'`.
fn csv_row(cells: &[&str]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        let cell = if cell.starts_with(['=', '+', '-', '@']) {
            format!("'{cell}")
        } else {
            (*cell).to_owned()
        };
        if cell.contains([',', '"', '\n', '\r']) {
            line.push('"');
            line.push_str(&cell.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(&cell);
        }
    }
    line.push_str("\r\n");
    line
}

/// `GET /console/orders/{outReqNo}`.
pub(crate) async fn show(
    State(console): State<Console>,
    who: SignedIn,
    Path(out_req_no): Path<String>,
) -> Result<Markup, ConsoleError> {
    let details = console.engine.order_details(&out_req_no).await?;
    let exchanges = console.engine.exchanges(&out_req_no).await?;
    let o = &details.order;
    let shown = who.operates();
    let (name, account, bank) = payee(o, shown);
    let decisions: Vec<Status> = [Status::Success, Status::Failure]
        .into_iter()
        .filter(|s| o.resolvable(*s))
        .collect();
    let body = html! {
        h1 { "Order " (o.out_req_no()) }
        p { (page::state(o)) " · " (direction(o)) " · " strong { (o.amount().to_string()) } " · protocol "
            a href={ "/console/protocols/" (o.trans_no()) } { (o.trans_no()) } }
        @if let Some(why) = page::why_it_needs_attention(o) {
            div.why role="note" { strong { "Why it needs attention. " } (why) }
        }
        table {
            tbody {
                tr { th { "Payee" } td { (name) } }
                @if !account.is_empty() { tr { th { "Account" } td { (account) } } }
                @if !bank.is_empty() { tr { th { "Bank" } td { (bank) } } }
                tr { th { "Payment order" } td { (o.pay_order_no().unwrap_or("-")) } }
                tr { th { "Sends" } td { (o.attempts.sends) " made, " (o.attempts.unsent) " known never to have left" } }
                tr { th { "Last sent" } td { (o.attempts.last_sent_at.map(page::time).unwrap_or_else(|| "never".into())) } }
                tr { th { "Polls without news" } td { (o.attempts.quiet_polls) } }
                tr { th { "Next poll" } td { (details.next_poll.map(page::time).unwrap_or_else(|| "none: nothing left to learn".into())) } }
                @if let Some(r) = &o.refusal { tr { th { "Refused" } td { (r.code) ": " (r.msg) } } }
            }
        }
        @if !decisions.is_empty() && shown {
            h2 { "Decide" }
            form.act method="post" action={ "/console/orders/" (o.out_req_no()) "/resolve" } {
                (page::csrf(&who))
                input type="hidden" name="version" value=(details.version);
                p { "Record what the payment system's own records say about this order (checked with them, not guessed). "
                    "It is decided on the order as shown (version " (details.version) "): if it moves meanwhile, nothing is recorded." }
                label { "Outcome"
                    select name="status" required {
                        @for s in &decisions { option value=(s.as_str()) { (s.as_str()) } }
                    }
                }
                label { "Why (kept in the order's history and the audit trail)" textarea name="note" required rows="2" {} }
                label { span { "Type the order number " strong { (o.out_req_no()) } " to confirm" } input name="confirm" required autocomplete="off"; }
                button type="submit" { "Record the decision" }
            }
        }
        h2 { "Timeline" }
        table {
            thead { tr { th { "#" } th { "When" } th { "Source" } th { "What happened" } } }
            tbody {
                @for e in &details.history {
                    tr { td.num { (e.seq) } td { (page::time(e.at)) } td { (e.source.to_string()) } td { (e.kind.to_string()) (note(&e.kind)) } }
                }
            }
        }
        h2 { "Evidence" }
        p { "What went over the wire about this order, as it was (personal data masked here). "
            a href={ "/console/orders/" (o.out_req_no()) "/evidence.json" } { "Download the evidence bundle (JSON)" }
            @if !shown { " (masked for your role)" } }
        @if exchanges.is_empty() { p.quiet { "Nothing kept." } }
        @for x in &exchanges {
            div.exchange {
                p { strong { (message_label(&x.message)) } " · " (page::time(x.at)) }
                @if !x.body.is_empty() { pre { (readable(&x.body)) } }
            }
        }
    };
    Ok(page::layout(o.out_req_no(), Some(&who), body))
}

fn note(kind: &protopay_engine::event::EventKind) -> Markup {
    use protopay_engine::event::EventKind as K;
    match kind {
        K::OperatorResolved { note, .. } | K::OperatorReconciled { note, .. } => {
            html! { br; span.quiet { "“" (note) "”" } }
        }
        _ => html! {},
    }
}

/// A body for reading: personal data masked, the envelope's `data` unfolded, indented.
fn readable(body: &str) -> String {
    let masked = protopay_engine::wire::masked_body(body);
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&masked) else {
        return masked;
    };
    if let Some(data) = value.get_mut("data")
        && let Some(inner) = data
            .as_str()
            .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
    {
        *data = inner;
    }
    serde_json::to_string_pretty(&value).unwrap_or(masked)
}

/// What an exchange was, in words.
fn message_label(m: &Message) -> String {
    match m {
        Message::Request { endpoint } => format!("sent {endpoint}, signed"),
        Message::Reply {
            endpoint,
            verified: true,
        } => format!("reply to {endpoint}, signature verified"),
        Message::Reply {
            endpoint,
            verified: false,
        } => format!("reply to {endpoint}, signature NOT verified (not believed)"),
        Message::NoReply {
            endpoint,
            maybe_delivered,
            reason,
        } => format!(
            "no reply to {endpoint} ({}): {reason}",
            if *maybe_delivered {
                "it may have been delivered"
            } else {
                "it never left"
            }
        ),
        Message::Callback { kind } => format!("callback {}, signature verified", kind.slug()),
    }
}

/// `GET /console/orders/{outReqNo}/evidence.json`: the order and every exchange kept, for a
/// dispute — bodies exactly as on the wire for `operate` (their signatures can be checked),
/// masked for `read`.
pub(crate) async fn evidence(
    State(console): State<Console>,
    who: SignedIn,
    Path(out_req_no): Path<String>,
) -> Result<Response, ConsoleError> {
    let details = console.engine.order_details(&out_req_no).await?;
    let exchanges = console.engine.exchanges(&out_req_no).await?;
    let shown = who.operates();
    tracing::info!(operator = %who.name, out_req_no = %out_req_no, unmasked = shown, "evidence bundle downloaded");
    let o = &details.order;
    let bundle = json!({
        "outReqNo": o.out_req_no(),
        "transNo": o.trans_no(),
        "amount": o.amount().to_string(),
        "status": o.state_label(),
        "payOrderNo": o.pay_order_no(),
        "sends": o.attempts.sends,
        "unsent": o.attempts.unsent,
        "generatedAt": console.engine.now().to_rfc3339(),
        "generatedBy": who.name,
        "bodies": if shown { "as on the wire" } else { "personal data masked" },
        "exchanges": exchanges.iter().map(|x| exchange_json(x, shown)).collect::<Vec<_>>(),
        "history": details.history.iter().map(|e| json!({
            "seq": e.seq, "at": e.at.to_rfc3339(), "source": e.source.to_string(), "what": e.kind.to_string(),
        })).collect::<Vec<_>>(),
    });
    let name = format!("attachment; filename=\"evidence-{}.json\"", sanitized(o.out_req_no()));
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        serde_json::to_string_pretty(&bundle).unwrap_or_default(),
    )
        .into_response())
}

fn exchange_json(x: &Exchange, shown: bool) -> serde_json::Value {
    json!({
        "at": x.at.to_rfc3339(),
        "what": message_label(&x.message),
        "message": x.message,
        "body": if shown { x.body.clone() } else { protopay_engine::wire::masked_body(&x.body) },
    })
}

/// A file name's part from an `outReqNo` (already `[A-Za-z0-9_-]` for ours; others too now).
fn sanitized(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(64)
        .collect()
}

fn status_of(text: Option<&str>) -> Result<Status, ConsoleError> {
    match text {
        Some("SUCCESS") => Ok(Status::Success),
        Some("FAILURE") => Ok(Status::Failure),
        _ => Err(ConsoleError::Invalid("the outcome is SUCCESS or FAILURE")),
    }
}

fn version_of(text: Option<&str>) -> Result<u64, ConsoleError> {
    text.and_then(|v| v.parse().ok()).ok_or(ConsoleError::Invalid(
        "the form lost the order's version: reload the page",
    ))
}

/// `POST /console/orders/{outReqNo}/resolve`: a person's decision on the order as they saw
/// it, confirmed by typing its number, with a reason; recorded under their name in the
/// commit that settles it.
pub(crate) async fn resolve(
    State(console): State<Console>,
    Path(out_req_no): Path<String>,
    Action(form): Action,
) -> Result<Response, ConsoleError> {
    let status = status_of(form.one("status"))?;
    let note = form.text("note", "a reason")?;
    if form.one("confirm").map(str::trim) != Some(out_req_no.as_str()) {
        return Err(ConsoleError::Invalid("type the order's number exactly to confirm"));
    }
    let version = version_of(form.one("version"))?;
    let decision = Decision::new(status, note).at_version(version).by(form.by.name.clone());
    console.engine.resolve(&out_req_no, decision).await?;
    tracing::info!(operator = %form.by.name, out_req_no = %out_req_no, %status, "resolved at the console");
    Ok(Redirect::to(&format!("/console/orders/{}", sanitized_path(&out_req_no))).into_response())
}

/// A path segment for a redirect: an order number with anything else percent-encoded.
fn sanitized_path(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `POST /console/resolve`: several flagged orders at once. Step one (`review`) reads each
/// selected order and shows how many will be decided, at which versions; step two (`decide`)
/// records the decision on each as it was shown, with one reason, after the person typed the
/// count. Each is its own commit and audit record; one that moved is reported, not decided.
pub(crate) async fn resolve_several(
    State(console): State<Console>,
    Action(form): Action,
) -> Result<Response, ConsoleError> {
    let who = form.by.clone();
    if form.one("step") == Some("decide") {
        let status = status_of(form.one("status"))?;
        let note = form.text("note", "a reason")?;
        let chosen = form.all("o");
        if form.one("confirm").map(str::trim) != Some(chosen.len().to_string().as_str()) {
            return Err(ConsoleError::Invalid("type the number of orders exactly to confirm"));
        }
        let mut outcomes = Vec::new();
        for entry in chosen {
            let (key, version) = entry.rsplit_once(':').ok_or(ConsoleError::Malformed)?;
            let decision = Decision::new(status, note)
                .at_version(version_of(Some(version))?)
                .by(who.name.clone());
            let outcome = match console.engine.resolve(key, decision).await {
                Ok(o) => format!("recorded: {}", o.state_label()),
                Err(e) => format!("not recorded: {}", protopay_api::answer_of(e).1),
            };
            outcomes.push((key.to_owned(), outcome));
        }
        tracing::info!(operator = %who.name, orders = outcomes.len(), %status, "several orders resolved at the console");
        let body = html! {
            h1 { "Decisions" }
            table { tbody { @for (key, outcome) in &outcomes { tr { td { a href={ "/console/orders/" (key) } { (key) } } td { (outcome) } } } } }
            p { a href="/console/orders?listing=NEEDS_ATTENTION" { "Back to the orders that need attention" } }
        };
        return Ok(page::layout("Decisions", Some(&who), body).into_response());
    }
    let mut chosen = Vec::new();
    for key in form.all("o") {
        chosen.push(console.engine.order_details(key).await?);
    }
    if chosen.is_empty() {
        return Err(ConsoleError::Missing("at least one selected order"));
    }
    let both = |s: Status| chosen.iter().all(|d| d.order.resolvable(s));
    let decisions: Vec<Status> = [Status::Success, Status::Failure]
        .into_iter()
        .filter(|s| both(*s))
        .collect();
    let body = html! {
        h1 { "Decide " (chosen.len()) " orders" }
        table {
            thead { tr { th { "Order" } th { "State" } th.num { "Amount" } th.num { "Version" } } }
            tbody { @for d in &chosen { tr {
                td { a href={ "/console/orders/" (d.order.out_req_no()) } { (d.order.out_req_no()) } }
                td { (page::state(&d.order)) } td.num { (d.order.amount().to_string()) } td.num { (d.version) }
            } } }
        }
        @if decisions.is_empty() {
            p.problem { "No one outcome may be recorded for all of these orders: decide them one by one." }
        } @else {
            form.act method="post" action="/console/resolve" {
                (page::csrf(&who))
                input type="hidden" name="step" value="decide";
                @for d in &chosen { input type="hidden" name="o" value={ (d.order.out_req_no()) ":" (d.version) }; }
                label { span { "Outcome for all " (chosen.len()) }
                    select name="status" required { @for s in &decisions { option value=(s.as_str()) { (s.as_str()) } } } }
                label { "Why (kept with each)" textarea name="note" required rows="2" {} }
                label { span { "Type " strong { (chosen.len()) } " to confirm how many orders this decides" } input name="confirm" required inputmode="numeric" autocomplete="off"; }
                button type="submit" { "Record " (chosen.len()) " decisions" }
            }
        }
    };
    Ok(page::layout("Decide several orders", Some(&who), body).into_response())
}
