#!/usr/bin/env python3
"""A host that writes no HTTP: a client generated from the OpenAPI document protopay serves
(`openapi-python-client`) runs an escrow flow through its typed models.

Starts `protopay-sim` and `protopay serve` (the escrow host's `serve`), fetches
`/v1/openapi.json`, generates a client package from it, imports it, and through it alone:
opens a protocol, takes a deposit (paid and arrived through the simulator's admin, which is
not protopay's API), pays out and refunds, follows every event by long-poll with acks
(reading each event's typed `data`), reads orders and the ledger, and reconciles. Any shape
the document declares wrongly fails here, in the generated client's own parsing.

    python3 generated_client.py PROTOPAY_BIN PROTOPAY_SIM_BIN WORK_DIR
"""

import importlib
import json
import os
import subprocess
import sys
import time
import urllib.request

from escrow_host import DEADLINE, OPERATE, READ, expect, ok, serve


def generate(api, work):
    """The client package generated from the served document, imported."""
    with urllib.request.urlopen(f"{api}/v1/openapi.json", timeout=30) as r:
        document = json.load(r)
    path = os.path.join(work, "openapi.json")
    with open(path, "w") as f:
        json.dump(document, f)
    out = os.path.join(work, "protopay_client")
    done = subprocess.run(
        ["openapi-python-client", "generate", "--path", path, "--output-path", out, "--meta", "none"],
        capture_output=True, text=True,
    )
    expect(done.returncode == 0, f"the generator accepts the document: {done.stdout} {done.stderr}")
    expect("Warning" not in done.stdout + done.stderr, f"and warns of nothing: {done.stdout} {done.stderr}")
    sys.path.insert(0, work)
    return importlib.import_module("protopay_client")


def flow(pc, api, simu):
    from protopay_client.api.events import ack, read_events
    from protopay_client.api.inbound import create_inbound
    from protopay_client.api.orders import list_orders, read_order
    from protopay_client.api.outbound import create_outbound
    from protopay_client.api.protocols import create_protocol, read_protocol, reconcile
    from protopay_client import models as m

    operate = pc.AuthenticatedClient(base_url=api, token=OPERATE, raise_on_unexpected_status=True)
    reader = pc.AuthenticatedClient(base_url=api, token=READ, raise_on_unexpected_status=True)
    seen = []

    def follow(what, done):
        """Read events (typed) until `done()`, acknowledging each batch."""
        deadline = time.monotonic() + DEADLINE
        while not done():
            expect(time.monotonic() < deadline, f"timed out waiting for {what}")
            batch = read_events.sync(client=reader, consumer="generated", wait_ms=5000)
            for e in batch.events:
                expect(e.data.kind == e.kind, f"data is tagged by its kind: {e}")
                seen.append(e)
            if batch.events:
                ack.sync_detailed(client=operate, body=m.Ack(consumer="generated", seq=batch.events[-1].seq))

    def status(out_req_no):
        return read_order.sync(client=reader, out_req_no=out_req_no).order.status

    protocol = create_protocol.sync(client=operate, body=m.CreateProtocol(trans_desc="flat 12B", business_id="B-1"))
    t = protocol.trans_no
    deposit = create_inbound.sync(client=operate, body=m.CreateInbound(trans_no=t, amount="100.00", prod_catalog=m.Cards("01")))
    expect(len(deposit.pos_code or "") == 6, f"a POS code: {deposit}")
    ok("POST", f"{simu}/sim/inbound/{deposit.out_req_no}/pay", {"status": "SUCCESS"}, token=None)
    ok("POST", f"{simu}/sim/inbound/{deposit.out_req_no}/arrive", token=None)
    follow("the deposit", lambda: status(deposit.out_req_no) == m.OrderStatus.SUCCESS)

    payee = dict(payee_name="Li Lei", payee_account="6222020200112233445", bank_name="ICBC Haidian",
                 bank_cnaps="102100000030")
    payout = create_outbound.sync(client=operate, body=m.CreateOutbound(
        trans_no=t, amount="40.00", out_type=m.Payment.OUT, out_req_no="APP001-gen-payout", **payee))
    refund = create_outbound.sync(client=operate, body=m.CreateOutbound(
        trans_no=t, amount="10.00", out_type=m.Payment.REFUND, out_req_no="APP001-gen-refund", **payee))
    expect(payout.direction == m.Direction.OUTBOUND, f"typed direction: {payout.direction}")
    for o in (payout, refund):
        follow(f"{o.out_req_no} accepted", lambda o=o: status(o.out_req_no) in (m.OrderStatus.UNPAID,
                                                                               m.OrderStatus.PROCESSING))
        ok("POST", f"{simu}/sim/outbound/{o.out_req_no}/settle", {"status": "SUCCESS"}, token=None)
        follow(f"{o.out_req_no} settled", lambda o=o: status(o.out_req_no) == m.OrderStatus.SUCCESS)

    ledger = read_protocol.sync(client=reader, trans_no=t).ledger
    expect((ledger.available, ledger.paid_out, ledger.refunded) == ("50.00", "40.00", "10.00"), f"ledger: {ledger}")
    expect(reconcile.sync(client=operate, trans_no=t).drift == [], "no drift")
    details = read_order.sync(client=reader, out_req_no="APP001-gen-payout")
    kinds = [e.kind for e in details.history]
    expect("OutboundReserved" in kinds and "OutboundSucceeded" in kinds, f"history: {kinds}")
    listed = list_orders.sync(client=reader, trans_no=t, status=m.ListingName.SUCCESS).items
    expect(len(listed) == 3 and all(o.payee_account in (None, "***3445") for o in listed), f"listed: {listed}")
    follow("the rest of the events", lambda: read_events.sync(client=reader, consumer="generated").events == [])
    typed = {type(e.data).__name__ for e in seen}
    expect({"InboundPaidEvent", "PendingEvent", "OutboundSucceededEvent"} <= typed, f"typed event data: {typed}")


def main():
    protopay, sim_bin, work = sys.argv[1], sys.argv[2], sys.argv[3]
    api, simu, stop = serve(protopay, sim_bin, work)
    try:
        flow(generate(api, work), api, simu)
    finally:
        stop()
    print("generated client: escrow flow through /v1 passed")


if __name__ == "__main__":
    main()
