-- Schema version 7: the audit trail (`Storage::audit`), the events that record what a person
-- did, newest first, from a partial index. Rows written before are marked by the migration's
-- Rust step (`fill_audit_column`), which reads each event's kind.

ALTER TABLE {schema}.events ADD COLUMN audit boolean NOT NULL DEFAULT false;
CREATE INDEX events_audit ON {schema}.events (seq) WHERE audit;
