-- Revenue (issue 9; seed 000 §1.3/§4.4, seed 001 «Подписки»). Each worker writes, per partition,
-- the absolute sums of its users' contributions per (app, day, plan); revenue_daily holds the
-- totals with every day filled: mrr and users are running sums of the stock deltas (the users
-- in a plan at the end of the day; plan = the free plan: known users not paying), the other
-- columns are that day's flows. Amounts in the plan's currency (exact: integer millionths).
CREATE TABLE IF NOT EXISTS revenue_daily_partitions (
    app             text        NOT NULL,
    day             date        NOT NULL,
    plan            text        NOT NULL,
    partition       int         NOT NULL,
    tier            text        NOT NULL,  -- free | paid | b2b
    mrr_delta       bigint      NOT NULL,  -- millionths
    users_delta     int         NOT NULL,
    joined          int         NOT NULL,
    new_paid        int         NOT NULL,
    churned_paid    int         NOT NULL,
    trial_started   int         NOT NULL,
    trial_converted int         NOT NULL,
    trial_ended     int         NOT NULL,
    revenue         bigint      NOT NULL,  -- millionths of cash collected
    payments_failed int         NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, day, plan, partition)
);

CREATE TABLE IF NOT EXISTS revenue_daily (
    app             text        NOT NULL,
    day             date        NOT NULL,
    plan            text        NOT NULL,
    tier            text        NOT NULL,
    mrr             numeric     NOT NULL,  -- monthly recurring revenue at the end of the day
    users           int         NOT NULL,  -- users in the plan at the end of the day
    joined          int         NOT NULL,  -- free plan: users first seen that day
    new_paid        int         NOT NULL,  -- became paying (from free or a trial)
    churned_paid    int         NOT NULL,  -- stopped paying (cancelled or moved to free)
    trial_started   int         NOT NULL,
    trial_converted int         NOT NULL,
    trial_ended     int         NOT NULL,  -- converted or not
    revenue         numeric     NOT NULL,  -- cash collected that day
    payments_failed int         NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, day, plan)
);

-- Per month and plan: seed 000 §1.3's revenue metrics. ARPU = MRR / paying users at the end of
-- the month; churn rate = churned / paying at the start; LTV = ARPU / monthly churn rate.
CREATE OR REPLACE VIEW revenue_monthly AS
WITH m AS (
    SELECT app, plan, tier, date_trunc('month', day)::date AS month, max(day) AS last_day,
           sum(joined)::int AS joined, sum(new_paid)::int AS new_paid,
           sum(churned_paid)::int AS churned_paid, sum(trial_started)::int AS trial_started,
           sum(trial_converted)::int AS trial_converted, sum(trial_ended)::int AS trial_ended,
           sum(revenue) AS revenue, sum(payments_failed)::int AS payments_failed
    FROM revenue_daily GROUP BY app, plan, tier, date_trunc('month', day)
)
SELECT m.app, m.month, m.plan, m.tier, e.mrr, e.users AS users_end,
       coalesce(s.users, 0) AS users_start, m.joined, m.new_paid, m.churned_paid,
       m.trial_started, m.trial_converted, m.trial_ended, m.revenue, m.payments_failed,
       CASE WHEN m.tier <> 'free' AND e.users > 0 THEN e.mrr / e.users END AS arpu,
       CASE WHEN m.tier <> 'free' AND coalesce(s.users, 0) > 0
            THEN m.churned_paid::numeric / s.users END AS churn_rate,
       CASE WHEN m.tier <> 'free' AND e.users > 0 AND m.churned_paid > 0 AND s.users > 0
            THEN (e.mrr / e.users) / (m.churned_paid::numeric / s.users) END AS ltv,
       CASE WHEN m.tier = 'b2b' THEN e.mrr * 12 END AS arr
FROM m
JOIN revenue_daily e ON e.app = m.app AND e.plan = m.plan AND e.day = m.last_day
LEFT JOIN revenue_daily s ON s.app = m.app AND s.plan = m.plan AND s.day = m.month - 1;

-- Per month, the whole app: the paid plans together, conversions against the free base.
-- Free→paid = new paying users / (free users at the start + users who joined in the month);
-- trial→paid = trials converted / trials ended; B2B ARR = 12 × the b2b plans' MRR.
CREATE OR REPLACE VIEW revenue_monthly_summary AS
WITH a AS (
    SELECT app, month,
           sum(mrr) FILTER (WHERE tier <> 'free') AS mrr,
           sum(users_end) FILTER (WHERE tier <> 'free')::int AS paying_end,
           sum(users_start) FILTER (WHERE tier <> 'free')::int AS paying_start,
           sum(users_start) FILTER (WHERE tier = 'free')::int AS free_start,
           sum(joined)::int AS joined, sum(new_paid)::int AS new_paid,
           sum(churned_paid)::int AS churned_paid, sum(trial_started)::int AS trial_started,
           sum(trial_converted)::int AS trial_converted, sum(trial_ended)::int AS trial_ended,
           sum(revenue) AS revenue, coalesce(sum(arr), 0) AS b2b_arr
    FROM revenue_monthly GROUP BY app, month
)
SELECT a.*,
       CASE WHEN paying_end > 0 THEN mrr / paying_end END AS arpu,
       CASE WHEN paying_start > 0 THEN churned_paid::numeric / paying_start END AS churn_rate,
       CASE WHEN paying_end > 0 AND paying_start > 0 AND churned_paid > 0
            THEN (mrr / paying_end) / (churned_paid::numeric / paying_start) END AS ltv,
       CASE WHEN free_start + joined > 0
            THEN new_paid::numeric / (free_start + joined) END AS free_to_paid,
       CASE WHEN trial_ended > 0 THEN trial_converted::numeric / trial_ended END AS trial_to_paid
FROM a;

-- Cryptorebate (seed 002 §3.4–3.5): running totals of the plan's rebate counters per day.
CREATE OR REPLACE VIEW rebate_totals AS
WITH d AS (
    SELECT app, day,
           coalesce(sum(value) FILTER (WHERE counter = 'rebate_earned_usd'), 0) AS earned,
           coalesce(sum(value) FILTER (WHERE counter = 'withdrawn_usd'), 0) AS withdrawn,
           coalesce(sum(value) FILTER (WHERE counter = 'rebate_service_usd'), 0) AS service
    FROM app_daily_counters
    WHERE counter IN ('rebate_earned_usd', 'withdrawn_usd', 'rebate_service_usd')
    GROUP BY app, day
)
SELECT app, day, earned, withdrawn, service,
       sum(earned) OVER w AS total_earned, sum(withdrawn) OVER w AS total_withdrawn,
       sum(earned - withdrawn) OVER w AS available, sum(service) OVER w AS total_service
FROM d WINDOW w AS (PARTITION BY app ORDER BY day);

-- Marketplace revenue (seed 000 §4.4, weekly): bookings and their gross value per ISO week.
CREATE OR REPLACE VIEW marketplace_revenue_weekly AS
SELECT app, date_trunc('week', day)::date AS week,
       coalesce(sum(value) FILTER (WHERE counter = 'bookings_completed'), 0)::int AS bookings,
       coalesce(sum(value) FILTER (WHERE counter = 'booking_revenue_rub'), 0) AS revenue
FROM app_daily_counters
WHERE counter IN ('bookings_completed', 'booking_revenue_rub')
GROUP BY app, date_trunc('week', day);
