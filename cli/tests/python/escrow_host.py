#!/usr/bin/env python3
"""A host in another language: a whole escrow flow through `protopay serve`'s /v1 API.

Uses only the standard library. Starts `protopay-sim` and `protopay serve` (sled in a temp
dir), then: checks the tokens (401 and 403 change nothing), opens a POS protocol, takes a
deposit (paid and arrived through the simulator's admin), pays out, refunds, sends a payout
that fails, follows every event by long-poll with acks, and checks the ledger against the
simulator and protopay's own reconciliation. Stops the server with SIGTERM: exit 0.

    python3 escrow_host.py PROTOPAY_BIN PROTOPAY_SIM_BIN WORK_DIR

Exits non-zero, with the reason, on the first broken expectation.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

OPERATE = "operate-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"
KEY = "python-host-md5-key"
DEADLINE = 120  # seconds for the whole flow: a safety net, never a wait


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, env=None):
    """Start a process and wait for its 'listening on http://ADDR' line."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=sys.stderr, env=env, text=True)
    line = proc.stdout.readline()
    if "listening on http://" not in line:
        raise SystemExit(f"{args[0]} did not start: {line!r}")
    return proc, line.split("http://", 1)[1].split()[0]


def call(method, url, body=None, token=OPERATE):
    """(status, decoded JSON or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else None)


def ok(method, url, body=None, token=OPERATE):
    status, reply = call(method, url, body, token)
    if status not in (200, 204):
        raise SystemExit(f"{method} {url} -> {status} {reply}")
    return reply


def expect(cond, what):
    if not cond:
        raise SystemExit(f"expectation failed: {what}")


class Feed:
    """Follows the event log by long-poll, acknowledging what it handled."""

    def __init__(self, api, consumer):
        self.api, self.consumer = api, consumer
        self.seen = []  # every event, in order
        self.last = 0

    def wait_for(self, what, predicate):
        """Read events until predicate(order state) holds."""
        deadline = time.monotonic() + DEADLINE
        while not predicate():
            expect(time.monotonic() < deadline, f"timed out waiting for {what}")
            batch = ok("GET", f"{self.api}/v1/events?consumer={self.consumer}&waitMs=5000")
            for e in batch["events"]:
                expect(e["seq"] > self.last, f"events in order: {e['seq']} after {self.last}")
                self.last = e["seq"]
                self.seen.append(e)
            if batch["events"]:
                ok("POST", f"{self.api}/v1/events/ack", {"consumer": self.consumer, "seq": self.last})


def serve(protopay, sim_bin, work):
    """Start `protopay-sim` and `protopay serve` (sled under `work`): (api, simulator, stop)."""
    sim, sim_addr = start([sim_bin, "--listen", "127.0.0.1:0", "--app-id", "APP001", "--key", KEY])
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    config = os.path.join(work, "protopay.toml")
    with open(config, "w") as f:
        f.write(
            f'app_id = "APP001"\n'
            f'base_url = "http://{sim_addr}"\n'
            f'callback_base_url = "{api}/protopay/notify"\n'
            f"poll = {{ submitted_ms = 500, processing_ms = 500, unpaid_ms = 500, awaiting_arrival_ms = 500 }}\n"
            f"\n[serve]\n"
            f'listen = "127.0.0.1:{port}"\n'
            f'store = "{os.path.join(work, "data")}"\n'
        )
    env = dict(os.environ, PROTOPAY_KEY=KEY, PROTOPAY_API_TOKEN=OPERATE, PROTOPAY_API_READ_TOKEN=READ)
    server, _ = start([protopay, "serve", "--config", config], env)

    def stop():
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        sim.terminate()
        sim.wait(timeout=30)
        expect(code == 0, f"protopay serve exits 0 on SIGTERM (got {code})")

    return api, f"http://{sim_addr}", stop


def main():
    protopay, sim_bin, work = sys.argv[1], sys.argv[2], sys.argv[3]
    api, simu, stop = serve(protopay, sim_bin, work)
    try:
        flow(api, simu)
    finally:
        stop()
    print("python host: escrow flow through /v1 passed")


def flow(api, simu):
    # ---- tokens: 401 and 403 change nothing -------------------------------------------------
    new_protocol = {"transDesc": "flat 12B", "businessId": "B-1"}
    for token in (None, "wrong-token-0123456789"):
        status, reply = call("POST", f"{api}/v1/protocols", new_protocol, token)
        expect(status == 401 and reply["code"] == "unauthorized", f"no/wrong token: 401 ({status} {reply})")
    status, reply = call("POST", f"{api}/v1/protocols", new_protocol, READ)
    expect(status == 403 and reply["code"] == "forbidden", f"read token on a command: 403 ({status} {reply})")
    expect(ok("GET", f"{api}/v1/protocols", token=READ)["items"] == [], "refused commands changed nothing")
    spec = ok("GET", f"{api}/v1/openapi.json", token=None)
    expect("/v1/outbound" in spec["paths"], "the OpenAPI document lists the API")

    # ---- a protocol and a POS deposit, paid and arrived -------------------------------------
    protocol = ok("POST", f"{api}/v1/protocols", new_protocol)
    trans_no = protocol["transNo"]
    feed = Feed(api, "python-host")
    orders = {}

    def order(out_req_no):
        return ok("GET", f"{api}/v1/orders/{out_req_no}", token=READ)["order"]

    def settled(out_req_no, status, arrived=None):
        def check():
            o = order(out_req_no)
            return o["status"] == status and (arrived is None or o["arrived"] == arrived)
        return check

    deposit = ok("POST", f"{api}/v1/inbound", {"transNo": trans_no, "amount": "100.00", "prodCatalog": "01"})
    expect(len(deposit["posCode"] or "") == 6, f"a POS deposit has a six-digit code: {deposit}")
    orders["deposit"] = deposit["outReqNo"]
    ok("POST", f"{simu}/sim/inbound/{deposit['outReqNo']}/pay", {"status": "SUCCESS"}, token=None)
    ok("POST", f"{simu}/sim/inbound/{deposit['outReqNo']}/arrive", token=None)
    feed.wait_for("the deposit to arrive", settled(deposit["outReqNo"], "SUCCESS", arrived=True))
    expect(ok("GET", f"{api}/v1/protocols/{trans_no}", token=READ)["ledger"]["available"] == "100.00",
           "the deposit is available")

    # ---- a payout, a refund, and a payout that fails ------------------------------------------
    payee = {"payeeName": "Li Lei", "payeeAccount": "6222020200112233445", "bankName": "ICBC Haidian",
             "bankCnaps": "102100000030"}
    payout = ok("POST", f"{api}/v1/outbound", dict(payee, transNo=trans_no, amount="40.00", outType="OUT",
                                                   outReqNo="APP001-payout-1"))
    expect(payout["payeeAccount"] == payee["payeeAccount"], "the command's answer shows what was sent")
    again = ok("POST", f"{api}/v1/outbound", dict(payee, transNo=trans_no, amount="40.00", outType="OUT",
                                                  outReqNo="APP001-payout-1"))
    expect(again["outReqNo"] == "APP001-payout-1", "a repeated command is the same order")
    status, reply = call("POST", f"{api}/v1/outbound", dict(payee, transNo=trans_no, amount="41.00",
                                                           outType="OUT", outReqNo="APP001-payout-1"))
    expect(status == 409 and reply["code"] == "idempotency_mismatch" and "amount" in reply["fields"],
           f"the same outReqNo with another amount is refused: {status} {reply}")
    refund = ok("POST", f"{api}/v1/outbound", dict(payee, transNo=trans_no, amount="10.00", outType="REFUND",
                                                   outReqNo="APP001-refund-1"))
    failing = ok("POST", f"{api}/v1/outbound", dict(payee, transNo=trans_no, amount="20.00", outType="OUT",
                                                    outReqNo="APP001-payout-2"))
    status, reply = call("POST", f"{api}/v1/outbound", dict(payee, transNo=trans_no, amount="1000.00",
                                                           outType="OUT", outReqNo="APP001-too-much"))
    expect(status == 422 and reply["code"] == "insufficient_funds", f"overdraft refused: {status} {reply}")
    status, _ = call("GET", f"{api}/v1/orders/APP001-too-much", token=READ)
    expect(status == 404, "a refused payout was not recorded")

    for o in (payout, refund, failing):
        feed.wait_for(f"{o['outReqNo']} to be accepted", lambda o=o: order(o["outReqNo"])["status"] in
                      ("UNPAID", "PROCESSING"))
    ok("POST", f"{simu}/sim/outbound/APP001-payout-1/settle", {"status": "SUCCESS"}, token=None)
    ok("POST", f"{simu}/sim/outbound/APP001-refund-1/settle", {"status": "SUCCESS"}, token=None)
    ok("POST", f"{simu}/sim/outbound/APP001-payout-2/settle", {"status": "FAILURE"}, token=None)
    feed.wait_for("the payout", settled("APP001-payout-1", "SUCCESS"))
    feed.wait_for("the refund", settled("APP001-refund-1", "SUCCESS"))
    feed.wait_for("the failed payout", settled("APP001-payout-2", "FAILURE"))

    # ---- the books ----------------------------------------------------------------------------
    ledger = ok("GET", f"{api}/v1/protocols/{trans_no}", token=READ)["ledger"]
    expect(ledger == {"inTransit": "0.00", "available": "50.00", "reserved": "0.00", "paidOut": "40.00",
                      "refunded": "10.00", "opening": "0.00"}, f"ledger: {ledger}")
    sim_books = ok("GET", f"{simu}/sim/stats", token=None)["protocols"][trans_no]
    expect(sim_books["available"] == "50.00" and sim_books["paid_out"] == "50.00",
           f"the simulator agrees: {sim_books}")
    rec = ok("POST", f"{api}/v1/protocols/{trans_no}/reconcile")
    expect(rec["drift"] == [], f"no drift: {rec}")
    expect(ok("GET", f"{simu}/sim/stats", token=None)["payouts"].get("APP001-payout-1") == 1, "paid out once")

    # ---- read models: lists mask personal data, one order shows its history -------------------
    listed = ok("GET", f"{api}/v1/orders?status=SUCCESS&transNo={trans_no}", token=READ)["items"]
    expect({o["outReqNo"] for o in listed} == {orders["deposit"], "APP001-payout-1", "APP001-refund-1"},
           f"successful orders: {[o['outReqNo'] for o in listed]}")
    expect(all(o["payeeAccount"] in (None, "***3445") for o in listed), "lists mask account numbers")
    page = ok("GET", f"{api}/v1/orders?transNo={trans_no}&limit=2", token=READ)
    rest = ok("GET", f"{api}/v1/orders?transNo={trans_no}&limit=2&cursor={page['next']}", token=READ)
    expect(len(page["items"]) + len(rest["items"]) == 4, "two pages hold the protocol's four orders")
    details = ok("GET", f"{api}/v1/orders/APP001-payout-2", token=READ)
    kinds = [e["kind"] for e in details["history"]]
    expect(details["nextPoll"] is None and "OutboundReserved" in kinds, f"history: {kinds}")
    expect(details["order"]["payeeAccount"] == payee["payeeAccount"], "one order shows its payee")

    # ---- events: in order, none skipped, not delivered again once acknowledged -----------------
    feed.wait_for("the rest of the events", lambda: ok(
        "GET", f"{api}/v1/events?consumer=python-host", token=READ)["events"] == [])
    expect(ok("GET", f"{api}/v1/events?consumer=python-host", token=READ)["events"] == [],
           "nothing left unacknowledged")
    about = {e["outReqNo"] for e in feed.seen}
    expect({orders["deposit"], "APP001-payout-1", "APP001-refund-1", "APP001-payout-2"} <= about, "events for every order")
    seqs = [e["seq"] for e in feed.seen]
    expect(seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no event skipped")


if __name__ == "__main__":
    main()
