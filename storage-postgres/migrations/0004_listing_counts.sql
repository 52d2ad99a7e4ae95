-- Schema version 4: how many orders each listing holds (`Storage::listing_counts`), kept by
-- a trigger on `orders` inside the writing transaction, so that reading them is a few rows
-- however many orders there are. Each listing's count is spread over 16 rows, picked by the
-- writing connection, so that concurrent commits seldom wait on one another's count rows;
-- the count is their sum. The trigger trusts the `status` and `attention` columns, which
-- every order write sets (`schema::order_columns`).

CREATE TABLE {schema}.listing_counts (
    listing text     NOT NULL,
    shard   smallint NOT NULL,
    n       bigint   NOT NULL,
    PRIMARY KEY (listing, shard)
);

CREATE FUNCTION {schema}.count_listing(text, bigint) RETURNS void LANGUAGE sql AS $$
    INSERT INTO {schema}.listing_counts AS c (listing, shard, n)
    VALUES ($1, pg_backend_pid() % 16, $2)
    ON CONFLICT (listing, shard) DO UPDATE SET n = c.n + EXCLUDED.n
$$;

CREATE FUNCTION {schema}.count_listings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM {schema}.count_listing(OLD.status, -1);
        IF OLD.attention THEN
            PERFORM {schema}.count_listing('needs_attention', -1);
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM {schema}.count_listing(NEW.status, 1);
        IF NEW.attention THEN
            PERFORM {schema}.count_listing('needs_attention', 1);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER orders_counted AFTER INSERT OR DELETE ON {schema}.orders
    FOR EACH ROW EXECUTE FUNCTION {schema}.count_listings();
CREATE TRIGGER orders_recounted AFTER UPDATE OF status, attention ON {schema}.orders
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.attention IS DISTINCT FROM NEW.attention)
    EXECUTE FUNCTION {schema}.count_listings();

-- The orders written before this version.
INSERT INTO {schema}.listing_counts (listing, shard, n)
    SELECT status, 0, count(*) FROM {schema}.orders GROUP BY status;
INSERT INTO {schema}.listing_counts (listing, shard, n)
    SELECT 'needs_attention', 0, count(*) FROM {schema}.orders WHERE attention HAVING count(*) > 0;
