-- The import queue (etl-events --serve takes work from it; etl-data retention prunes it).
-- One row per uploaded object version. `result` is the import's manifest; its "outputs" array
-- lists what the import wrote ({"url": ..., "bytes": ..., "sha256": ...}), which is what
-- retention deletes together with the row.
CREATE TABLE IF NOT EXISTS imports (
    id            bigserial PRIMARY KEY,
    source        text        NOT NULL,
    source_etag   text,
    sequencer     text,
    status        text        NOT NULL DEFAULT 'Pending'
                  CHECK (status IN ('Pending', 'Running', 'Success', 'Fail')),
    attempts      integer     NOT NULL DEFAULT 0,
    error         text,
    result        jsonb,
    lease_owner   text,
    lease_expires timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS imports_status_created ON imports (status, created_at);
CREATE INDEX IF NOT EXISTS imports_created ON imports (created_at);
