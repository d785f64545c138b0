-- Retention of registration cohorts (issue 4): users registered on a day (or in an ISO week)
-- who were active exactly n days after their own registration day. Partition rows carry the
-- counts of their share of the users; retention_cohorts holds the sums, like daily_metrics.
ALTER TABLE daily_metrics_partitions
    ADD COLUMN IF NOT EXISTS d1  int NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS d3  int NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS d7  int NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS d14 int NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS d30 int NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS d60 int NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS d90 int NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS retention_cohorts (
    app         text        NOT NULL,
    cohort_date date        NOT NULL,  -- the registration day, or the Monday of the ISO week
    cohort_kind text        NOT NULL CHECK (cohort_kind IN ('day', 'week')),
    size        int         NOT NULL,
    d1          int         NOT NULL,
    d3          int         NOT NULL,
    d7          int         NOT NULL,
    d14         int         NOT NULL,
    d30         int         NOT NULL,
    d60         int         NOT NULL,
    d90         int         NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, cohort_kind, cohort_date)
);

-- Retention as shares, for dashboards and analysts (a count is 0 until day c + n has come).
CREATE OR REPLACE VIEW retention_rates AS
SELECT app, cohort_date, cohort_kind, size,
       d1::numeric / size AS d1_rate, d3::numeric / size AS d3_rate,
       d7::numeric / size AS d7_rate, d14::numeric / size AS d14_rate,
       d30::numeric / size AS d30_rate, d60::numeric / size AS d60_rate,
       d90::numeric / size AS d90_rate
FROM retention_cohorts WHERE size > 0;
