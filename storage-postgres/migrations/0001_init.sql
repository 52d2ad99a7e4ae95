-- protopay on PostgreSQL, schema version 1. `{schema}` is replaced by the configured schema.
-- Records are MessagePack with named fields (the same codec as sled's format 1), beside the
-- columns that indexes and claims need.

CREATE TABLE {schema}.protocols (
    trans_no text PRIMARY KEY,
    version  bigint NOT NULL CHECK (version > 0),
    value    bytea NOT NULL
);

CREATE TABLE {schema}.orders (
    out_req_no text PRIMARY KEY,
    trans_no   text NOT NULL,
    version    bigint NOT NULL CHECK (version > 0),
    value      bytea NOT NULL
);
CREATE INDEX orders_by_protocol ON {schema}.orders (trans_no, out_req_no);

-- The due index, with the claim (lease) of the instance polling each order.
CREATE TABLE {schema}.due (
    out_req_no   text PRIMARY KEY,
    at           timestamptz NOT NULL,
    leased_by    text,
    leased_until timestamptz
);
CREATE INDEX due_by_time ON {schema}.due (at, out_req_no);

-- The event log. `seq` is taken from `counter` inside the committing transaction, whose row
-- lock makes event-writing commits become visible in `seq` order (see ARCHITECTURE.md).
CREATE TABLE {schema}.counter (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_seq bigint NOT NULL
);
INSERT INTO {schema}.counter (last_seq) VALUES (0);

CREATE TABLE {schema}.events (
    seq   bigint PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE {schema}.cursors (
    consumer text PRIMARY KEY,
    seq      bigint NOT NULL
);

CREATE TABLE {schema}.orphans (
    sign  text PRIMARY KEY,
    added bigserial NOT NULL,
    value bytea NOT NULL
);
