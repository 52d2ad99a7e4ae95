// A host in TypeScript that writes no HTTP to protopay: every call goes through the client
// `@hey-api/openapi-ts` generated from the document `protopay serve` serves (fetch client;
// zod checks each request before it is sent and each answer against the document). Run by
// `../python/typescript_client.py`, which starts the servers, generates `./client`, compiles
// this with `tsc` (strict) and runs it. The payer's side goes to the simulator's own admin
// routes, which are not protopay's API.
//
//   PROTOPAY_API=http://… PROTOPAY_SIM=http://… OPERATE_TOKEN=… READ_TOKEN=… node build/flow.js

import { createClient } from "./client/client/index.js";
import {
  ack,
  createInbound,
  createOutbound,
  createProtocol,
  listOrders,
  readEvents,
  readOrder,
  readProtocol,
  reconcile,
} from "./client/sdk.gen.js";
import type { EventView, OrderStatus, OrderView } from "./client/types.gen.js";

const DEADLINE_MS = 120_000; // for the whole flow: a safety net, never a wait

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function expect(condition: boolean, what: string): void {
  if (!condition) throw new Error(`expectation failed: ${what}`);
}

const api = env("PROTOPAY_API");
const sim = env("PROTOPAY_SIM");
// Spread into every call: `throwOnError` makes a status the document does not call success an
// exception, and types each answer as the document's success body.
const operate = { client: createClient({ baseUrl: api, auth: env("OPERATE_TOKEN") }), throwOnError: true } as const;
const reader = { client: createClient({ baseUrl: api, auth: env("READ_TOKEN") }), throwOnError: true } as const;

/** The payer (or the bank) acts, through the simulator's admin. */
async function payer(path: string, body?: object): Promise<void> {
  const r = await fetch(`${sim}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body ?? {}),
  });
  expect(r.ok, `simulator ${path}: ${r.status}`);
}

const seen: EventView[] = [];
const started = Date.now();

/** Read events (typed, validated) until `done()`, acknowledging each batch. */
async function follow(what: string, done: () => Promise<boolean>): Promise<void> {
  while (!(await done())) {
    expect(Date.now() - started < DEADLINE_MS, `timed out waiting for ${what}`);
    const { data } = await readEvents({ ...reader, query: { consumer: "typescript", waitMs: 5000 } });
    for (const e of data.events) {
      expect(e.data.kind === e.kind, `data is tagged by its kind: ${JSON.stringify(e)}`);
      seen.push(e);
    }
    const last = data.events.at(-1);
    if (last) await ack({ ...operate, body: { consumer: "typescript", seq: last.seq } });
  }
}

async function status(outReqNo: string): Promise<OrderStatus> {
  const { data } = await readOrder({ ...reader, path: { outReqNo } });
  return data.order.status;
}

async function main(): Promise<void> {
  const opening = { transDesc: "flat 12B", businessId: "B-1", idempotencyKey: "ts-flat-12B" };
  const { data: protocol } = await createProtocol({ ...operate, body: opening });
  const { data: again } = await createProtocol({ ...operate, body: opening });
  expect(again.transNo === protocol.transNo, "a repeat with the same idempotencyKey opens nothing new");
  const transNo = protocol.transNo;

  const { data: deposit } = await createInbound({
    ...operate,
    body: { transNo, amount: "100.00", prodCatalog: "01" },
  });
  expect(deposit.posCode?.length === 6, `a POS code: ${JSON.stringify(deposit)}`);
  await payer(`/sim/inbound/${deposit.outReqNo}/pay`, { status: "SUCCESS" });
  await payer(`/sim/inbound/${deposit.outReqNo}/arrive`);
  await follow("the deposit", async () => (await status(deposit.outReqNo)) === "SUCCESS");

  const payee = {
    payeeName: "Li Lei",
    payeeAccount: "6222020200112233445",
    bankName: "ICBC Haidian",
    bankCnaps: "102100000030",
  };
  const sent: OrderView[] = [];
  for (const [outType, amount, outReqNo] of [
    ["OUT", "40.00", "APP001-ts-payout"],
    ["REFUND", "10.00", "APP001-ts-refund"],
  ] as const) {
    const { data } = await createOutbound({ ...operate, body: { transNo, amount, outType, outReqNo, ...payee } });
    expect(data.direction === "outbound", `typed direction: ${data.direction}`);
    sent.push(data);
  }
  for (const o of sent) {
    await follow(`${o.outReqNo} accepted`, async () => ["UNPAID", "PROCESSING"].includes(await status(o.outReqNo)));
    await payer(`/sim/outbound/${o.outReqNo}/settle`, { status: "SUCCESS" });
    await follow(`${o.outReqNo} settled`, async () => (await status(o.outReqNo)) === "SUCCESS");
  }

  const { data: read } = await readProtocol({ ...reader, path: { transNo } });
  const { available, paidOut, refunded } = read.ledger;
  expect(
    available === "50.00" && paidOut === "40.00" && refunded === "10.00",
    `ledger: ${JSON.stringify(read.ledger)}`,
  );
  const { data: reconciled } = await reconcile({ ...operate, path: { transNo } });
  expect(reconciled.drift.length === 0, `no drift: ${reconciled.drift}`);
  const { data: details } = await readOrder({ ...reader, path: { outReqNo: "APP001-ts-payout" } });
  const kinds = details.history.map((e) => e.kind);
  expect(kinds.includes("OutboundReserved") && kinds.includes("OutboundSucceeded"), `history: ${kinds}`);
  const { data: listed } = await listOrders({ ...reader, query: { transNo, status: "SUCCESS" } });
  expect(
    listed.items.length === 3 && listed.items.every((o) => o.payeeAccount == null || o.payeeAccount === "***3445"),
    `listed: ${JSON.stringify(listed.items)}`,
  );
  await follow("the rest of the events", async () => {
    const { data } = await readEvents({ ...reader, query: { consumer: "typescript" } });
    return data.events.length === 0;
  });
  // The union is discriminated by `kind`: each kind's own fields are typed.
  const payouts = seen.flatMap((e) => (e.data.kind === "OutboundSucceeded" ? [e.data] : []));
  expect(payouts.length === 2, `typed OutboundSucceeded data: ${JSON.stringify(payouts)}`);
  const pending = seen.flatMap((e) => (e.data.kind === "Pending" ? [e.data.status] : []));
  expect(pending.every((s) => s === "UNPAID" || s === "PROCESSING"), `Pending statuses: ${pending}`);
  console.log("typescript client: escrow flow through /v1 passed");
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : JSON.stringify(e));
  process.exit(1);
});
