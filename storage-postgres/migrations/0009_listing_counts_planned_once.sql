-- Schema version 9: the listing counts' trigger writes its rows itself, in one statement.
-- Until now it called the SQL function `count_listing` once per listing moved (two to four
-- calls for an order changing status), and PostgreSQL plans a SQL function's statement
-- afresh on every call: under load that planning was about a sixth of the database's CPU.
-- A PL/pgSQL function's statements are planned once per session and then reused (commits
-- ask for generic plans, so they are not planned again for each call's values). The counts
-- and the rows they are kept in (one per listing and writing backend) do not change.
--
-- `OLD` is NULL in an insert's trigger and `NEW` in a delete's (PostgreSQL 11 and later), so
-- the rows below that name them drop out of the sum; a listing left and entered again by
-- the same write (only `attention` changed) sums to nothing and is not written.

CREATE OR REPLACE FUNCTION {schema}.count_listings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.listing_counts AS c (listing, shard, n)
    SELECT moved.listing, pg_backend_pid(), sum(moved.n)
    FROM (VALUES
        (OLD.status, -1),
        (CASE WHEN OLD.attention THEN 'needs_attention' END, -1),
        (NEW.status, 1),
        (CASE WHEN NEW.attention THEN 'needs_attention' END, 1)
    ) AS moved (listing, n)
    WHERE moved.listing IS NOT NULL
    GROUP BY moved.listing
    HAVING sum(moved.n) <> 0
    ON CONFLICT (listing, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END
$$;

DROP FUNCTION {schema}.count_listing(text, bigint);
