-- Aggregate snapshots (tables/snapshot.py): one per internal partition, written by a worker when
-- it stops or hands the partition over, read by the next owner's recovery. Internal to Pulse: the
-- body is its own msgpack format, trusted only when the digests of the restored contents match.
CREATE TABLE IF NOT EXISTS aggregate_snapshots (
    pipeline   text        NOT NULL,  -- PULSE_APP_ID: pipelines may share a database
    partition  integer     NOT NULL,
    taken_at   timestamptz NOT NULL,
    body       bytea       NOT NULL,
    PRIMARY KEY (pipeline, partition)
);
