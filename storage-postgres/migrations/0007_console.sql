-- Schema version 7, for the operator console:
--
-- The audit trail (`Storage::audit`): the events that record what a person did, newest
-- first, from a partial index. Rows written before are marked by the migration's Rust step
-- (`fill_audit_column`), which reads each event's kind.
--
-- The evidence (`Storage::exchanges`): each order's messages on the wire, as MessagePack,
-- the first 64 of each order (the insert counts; `id` keeps them in the order written).

ALTER TABLE {schema}.events ADD COLUMN audit boolean NOT NULL DEFAULT false;
CREATE INDEX events_audit ON {schema}.events (seq) WHERE audit;

CREATE TABLE {schema}.exchanges (
    id         bigserial PRIMARY KEY,
    out_req_no text NOT NULL,
    value      bytea NOT NULL
);
CREATE INDEX exchanges_by_order ON {schema}.exchanges (out_req_no, id);
