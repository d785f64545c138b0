-- Daily counters declared in the plans (issue 4 §7): seed 004's daily_stats columns, seed 000's
-- LLM calls, tokens and cost per provider. Exact: partitions add integer millionths.
CREATE TABLE IF NOT EXISTS app_daily_counters_partitions (
    app        text        NOT NULL,
    day        date        NOT NULL,
    partition  int         NOT NULL,
    counter    text        NOT NULL,
    dimension  text        NOT NULL DEFAULT '',
    millionths bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, day, partition, counter, dimension)
);

CREATE TABLE IF NOT EXISTS app_daily_counters (
    app        text        NOT NULL,
    day        date        NOT NULL,
    counter    text        NOT NULL,
    dimension  text        NOT NULL DEFAULT '',  -- the value of the plan's `by` property, or ''
    value      numeric     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, day, counter, dimension)
);

-- Seed 004's daily_stats, one row per day, for the /admin_analytics queries it already has.
CREATE OR REPLACE VIEW vkusvill_daily_stats AS
SELECT m.day AS date, m.dau, m.new_users, m.sessions,
       coalesce(max(c.value) FILTER (WHERE c.counter = 'carts_created'), 0)::int AS carts_created,
       coalesce(max(c.value) FILTER (WHERE c.counter = 'total_gmv'), 0) AS total_gmv,
       coalesce(max(c.value) FILTER (WHERE c.counter = 'searches'), 0)::int AS searches,
       coalesce(max(c.value) FILTER (WHERE c.counter = 'errors'), 0)::int AS errors
FROM daily_metrics m
LEFT JOIN app_daily_counters c ON c.app = m.app AND c.day = m.day
WHERE m.app = 'vkusvill_bot'
GROUP BY m.day, m.dau, m.new_users, m.sessions;
