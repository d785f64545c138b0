-- Funnels declared in the plans (issue 4 §3). Their per-day counts travel as plan counters
-- (exact, partition sums); these views give them their own shape.
-- funnel_cohorts: users whose step 0 fell on cohort_date and who went on to reach each step.
CREATE OR REPLACE VIEW funnel_cohorts AS
SELECT app, split_part(counter, ':', 2) AS funnel, day AS cohort_date,
       split_part(dimension, ':', 1)::int AS step_index, split_part(dimension, ':', 2) AS step,
       value::bigint AS users
FROM app_daily_counters WHERE counter LIKE 'funnel:%:cohort';

-- funnel_daily: users who reached each step on that day (in order, after the previous step).
CREATE OR REPLACE VIEW funnel_daily AS
SELECT app, split_part(counter, ':', 2) AS funnel, day,
       split_part(dimension, ':', 1)::int AS step_index, split_part(dimension, ':', 2) AS step,
       value::bigint AS users
FROM app_daily_counters WHERE counter LIKE 'funnel:%:daily';

-- Conversion of each cohort from step 0, and from the previous step.
CREATE OR REPLACE VIEW funnel_conversion AS
SELECT c.app, c.funnel, c.cohort_date, c.step_index, c.step, c.users,
       c.users::numeric / nullif(first_step.users, 0) AS from_start,
       c.users::numeric / nullif(previous.users, 0) AS from_previous
FROM funnel_cohorts c
JOIN funnel_cohorts first_step ON first_step.app = c.app AND first_step.funnel = c.funnel
  AND first_step.cohort_date = c.cohort_date AND first_step.step_index = 0
LEFT JOIN funnel_cohorts previous ON previous.app = c.app AND previous.funnel = c.funnel
  AND previous.cohort_date = c.cohort_date AND previous.step_index = c.step_index - 1;

-- Per user: the time each step was reached (NULL after the last one reached).
CREATE TABLE IF NOT EXISTS user_funnels (
    app           text          NOT NULL,
    user_id       text          NOT NULL,
    funnel        text          NOT NULL,
    steps_reached int           NOT NULL,
    step_times    timestamptz[] NOT NULL,
    updated_at    timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (app, user_id, funnel)
);
