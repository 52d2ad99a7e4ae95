-- Schema version 3: named leases (`Storage::hold_lease`) on work one instance at a time must
-- do, such as pushing a consumer's events in order. Times are the database's clock.

CREATE TABLE {schema}.leases (
    name  text PRIMARY KEY,
    owner text NOT NULL,
    until timestamptz NOT NULL
);
