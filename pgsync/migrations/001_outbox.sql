-- 001_outbox: the dataplane outbox.
--
-- Writers insert one row per changed key in the same transaction as their own
-- data; the dataplane sync (package pgsync) publishes the rows in id order and
-- marks each done. Safe to run more than once.

CREATE TABLE IF NOT EXISTS dataplane_outbox (
    id           bigserial   PRIMARY KEY,
    namespace    text        NOT NULL,
    key          text        NOT NULL,
    -- The new value; NULL for a delete (and read as empty for a put).
    value        bytea,
    deleted      boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Set by the sync when it is done with the row: published, superseded
    -- by a newer version (see error), or rejected (error, no version).
    published_at timestamptz,
    -- The dataplane version the sync gave the row. Reserved (committed)
    -- before the row is published, so a publish repeated after a crash
    -- is recognised.
    version      bigint,
    -- Why the row did not become the key's state, if it did not.
    error        text,
    -- The dataplane's limits (record.ValidateKey, record.MaxValueSize),
    -- checked here so a bad row fails the writer's own transaction.
    CONSTRAINT dataplane_outbox_namespace_valid CHECK (namespace ~ '^[a-z0-9_-]{1,64}$'),
    CONSTRAINT dataplane_outbox_key_valid CHECK (octet_length(key) BETWEEN 1 AND 256 AND key !~ '[\x01-\x1f\x7f]'),
    CONSTRAINT dataplane_outbox_value_size CHECK (octet_length(value) <= 262144),
    CONSTRAINT dataplane_outbox_delete_has_no_value CHECK (NOT deleted OR value IS NULL)
);

-- The sync reads unpublished rows in id order.
CREATE INDEX IF NOT EXISTS dataplane_outbox_unpublished
    ON dataplane_outbox (id) WHERE published_at IS NULL;

-- A sync that takes over starts its clock above every version handed out.
CREATE INDEX IF NOT EXISTS dataplane_outbox_version
    ON dataplane_outbox (version) WHERE version IS NOT NULL;

-- Before each insert: hold a per-key lock until the writer's transaction
-- ends, and only then number the row. Two transactions writing one key thus
-- get ids in the order they commit, and the sync, which follows id order,
-- can never see a later row of a key while an earlier one is still
-- uncommitted. (Different keys do not wait for each other, barring a
-- 32-bit hash collision.) Rows start unpublished whatever the writer says.
CREATE OR REPLACE FUNCTION dataplane_outbox_before_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1685090146, hashtext(NEW.namespace || '/' || NEW.key));
    NEW.id := nextval(pg_get_serial_sequence(format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME), 'id'));
    NEW.published_at := NULL;
    NEW.version := NULL;
    NEW.error := NULL;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS dataplane_outbox_before_insert ON dataplane_outbox;
CREATE TRIGGER dataplane_outbox_before_insert
    BEFORE INSERT ON dataplane_outbox
    FOR EACH ROW EXECUTE FUNCTION dataplane_outbox_before_insert();

-- After each insert: wake the sync (LISTEN dataplane_outbox). The
-- notification is delivered when the writer commits, never before.
CREATE OR REPLACE FUNCTION dataplane_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dataplane_outbox', NEW.id::text);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS dataplane_outbox_notify ON dataplane_outbox;
CREATE TRIGGER dataplane_outbox_notify
    AFTER INSERT ON dataplane_outbox
    FOR EACH ROW EXECUTE FUNCTION dataplane_outbox_notify();
