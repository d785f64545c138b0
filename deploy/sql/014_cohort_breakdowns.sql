-- Registration cohorts broken down by a user property (issue 4, seed 002 §6; tables/
-- cohort_breakdowns.py). The counts travel as plan counters — cohort:<dimension>:<measure>,
-- dimension = the value's label, day = the cohort (registration) day — so their partition rows
-- are summed exactly like every other counter (app_daily_counters); day cohorts are those rows,
-- ISO-week cohorts (keyed by the Monday) sum the days of the week, as in retention_cohorts.
-- Every user of a cohort counts under one value per dimension ("(none)" without one), so each
-- breakdown's sizes sum to the cohort's size in retention_cohorts.
CREATE OR REPLACE VIEW retention_cohort_breakdowns AS
WITH counts AS (
    SELECT app, day, split_part(counter, ':', 2) AS dimension,
           split_part(counter, ':', 3) AS measure, dimension AS value, value AS users
    FROM app_daily_counters
    WHERE counter LIKE 'cohort:%'
), kinds AS (
    SELECT app, 'day'::text AS cohort_kind, day AS cohort_date, dimension, value, measure, users
    FROM counts
    UNION ALL
    SELECT app, 'week', date_trunc('week', day)::date, dimension, value, measure, users
    FROM counts
)
SELECT app, cohort_kind, cohort_date, dimension, value,
       coalesce(sum(users) FILTER (WHERE measure = 'size'), 0)::int AS size,
       coalesce(sum(users) FILTER (WHERE measure = 'd1'), 0)::int AS d1,
       coalesce(sum(users) FILTER (WHERE measure = 'd3'), 0)::int AS d3,
       coalesce(sum(users) FILTER (WHERE measure = 'd7'), 0)::int AS d7,
       coalesce(sum(users) FILTER (WHERE measure = 'd14'), 0)::int AS d14,
       coalesce(sum(users) FILTER (WHERE measure = 'd30'), 0)::int AS d30,
       coalesce(sum(users) FILTER (WHERE measure = 'd60'), 0)::int AS d60,
       coalesce(sum(users) FILTER (WHERE measure = 'd90'), 0)::int AS d90,
       -- users whose plan activation property is true (cryptorebate: a first trade)
       coalesce(sum(users) FILTER (WHERE measure = 'activated'), 0)::int AS activated
FROM kinds
GROUP BY app, cohort_kind, cohort_date, dimension, value
HAVING coalesce(sum(users) FILTER (WHERE measure = 'size'), 0) > 0;

-- The seed's metrics for every breakdown: retention as shares (0 until day c + n has come, like
-- retention_rates) and the activation rate. LTV and ARPU per value are not here: see README.
CREATE OR REPLACE VIEW retention_breakdown_rates AS
SELECT app, cohort_kind, cohort_date, dimension, value, size,
       activated::numeric / size AS activation_rate,
       d1::numeric / size AS d1_rate, d3::numeric / size AS d3_rate,
       d7::numeric / size AS d7_rate, d14::numeric / size AS d14_rate,
       d30::numeric / size AS d30_rate, d60::numeric / size AS d60_rate,
       d90::numeric / size AS d90_rate
FROM retention_cohort_breakdowns;
