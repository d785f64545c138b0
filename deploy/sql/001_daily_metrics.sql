-- Per-app daily active-user metrics (issue 2). Each worker partition writes the absolute values
-- of its share of the users to daily_metrics_partitions; daily_metrics holds their sums, written
-- in the same transaction, so a replay or a partition moving between workers converges.
CREATE TABLE IF NOT EXISTS daily_metrics_partitions (
    app        text        NOT NULL,
    day        date        NOT NULL,
    partition  int         NOT NULL,
    dau        int         NOT NULL,
    wau        int         NOT NULL,
    mau        int         NOT NULL,
    new_users  int         NOT NULL,
    sessions   int         NOT NULL,
    events     bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, day, partition)
);

CREATE TABLE IF NOT EXISTS daily_metrics (
    app        text        NOT NULL,
    day        date        NOT NULL,
    dau        int         NOT NULL,
    wau        int         NOT NULL,
    mau        int         NOT NULL,
    new_users  int         NOT NULL,
    sessions   int         NOT NULL,
    events     bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, day)
);
