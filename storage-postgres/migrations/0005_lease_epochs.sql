-- Schema version 5: a fencing epoch on each named lease (`Storage::hold_lease`). It grows
-- every time the lease changes hands and never goes back (a released lease keeps its row), so
-- work done under a lease (a webhook push) carries it, and a receiver can tell a holder that
-- was paused past its lease from the one that took over.

ALTER TABLE {schema}.leases ADD COLUMN epoch bigint NOT NULL DEFAULT 1;
