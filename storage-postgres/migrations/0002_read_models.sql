-- Schema version 2: the read models' indexes. Orders carry the listing of their status and
-- whether they need attention (open and flagged); events name their order. The new columns of
-- existing rows are filled from the records by the migration's Rust step (`schema.rs`),
-- inside the same transaction, before `status` becomes NOT NULL.

ALTER TABLE {schema}.orders
    ADD COLUMN status    text,
    ADD COLUMN attention boolean NOT NULL DEFAULT false;
CREATE INDEX orders_by_status ON {schema}.orders (status, out_req_no);
CREATE INDEX orders_needing_attention ON {schema}.orders (out_req_no) WHERE attention;

ALTER TABLE {schema}.events ADD COLUMN out_req_no text;
CREATE INDEX events_by_order ON {schema}.events (out_req_no, seq) WHERE out_req_no IS NOT NULL;
