-- Schema version 6: which protocol each host idempotency key opened (`Storage::opening`).
-- A row is written once, in the commit that stores its protocol, and never changed: the
-- primary key makes a second commit with the same key write nothing (`Conflict`).

CREATE TABLE {schema}.openings (
    idempotency_key text PRIMARY KEY,
    trans_no        text NOT NULL
);
