-- Schema version 8: an event log without a global lock.
--
-- Up to version 7 every event-writing commit took its `seq` from the single `counter` row,
-- whose row lock made such commits wait for one another (so that seqs became visible in
-- order). From this version an event's `seq` is derived from the transaction that wrote it:
--
--     seq = base + xid * 65536 + i        (i = 0, 1, … within the commit)
--
-- where `xid` is the writing transaction's `pg_current_xact_id()` (64 bits, never wraps).
-- Readers deliver only the events below `base + xmin * 65536`, `xmin` being the oldest
-- transaction still in progress in the reading statement's snapshot: every transaction below
-- it has ended, and every later one gets a larger xid, so no event can ever appear below that
-- bound again. A late commit is waited for, never skipped; nothing waits at commit time.
-- See ARCHITECTURE.md, "The event log never skips".
--
-- `base` keeps seqs growing across this change (the first new seq is above every old one)
-- and across a restore into another cluster, whose xids start again from small numbers
-- (`schema::keep_seqs_growing`, run at every open).

CREATE TABLE {schema}.seq_base (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    base bigint NOT NULL
);
INSERT INTO {schema}.seq_base (base)
    SELECT greatest(0, last_seq + 1 - pg_current_xact_id()::text::bigint * 65536) FROM {schema}.counter;

DROP TABLE {schema}.counter;

-- Each listing's count is kept per writing backend (`pg_backend_pid()`), not in 16 shards that
-- backends shared: a backend runs one transaction at a time, so no commit ever waits on
-- another's count row. The rows of backends that have gone are folded into shard 0 at every
-- open (`schema::fold_listing_counts`), which keeps them few.
ALTER TABLE {schema}.listing_counts ALTER COLUMN shard TYPE integer;
CREATE OR REPLACE FUNCTION {schema}.count_listing(text, bigint) RETURNS void LANGUAGE sql AS $$
    INSERT INTO {schema}.listing_counts AS c (listing, shard, n)
    VALUES ($1, pg_backend_pid(), $2)
    ON CONFLICT (listing, shard) DO UPDATE SET n = c.n + EXCLUDED.n
$$;
