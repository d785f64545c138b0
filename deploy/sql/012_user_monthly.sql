-- Monthly report (seed 001 API 5 «Месячный отчёт», issue 9 item 3): per user and calendar month
-- of the app's local time, written live by the workers (tables.monthly defines each column).
CREATE TABLE IF NOT EXISTS user_monthly (
    app              text        NOT NULL,
    user_id          text        NOT NULL,
    month            date        NOT NULL,  -- the first day of the local calendar month
    total_actions    int         NOT NULL,
    habits_completed int         NOT NULL,
    journal_entries  int         NOT NULL,
    goals_progress   int         NOT NULL,  -- the highest goal progress reported, percent
    streak_max       int         NOT NULL,  -- the longest streak run inside the month, days
    features_used    int         NOT NULL,  -- distinct features used
    achievements     int         NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, user_id, month)
);
CREATE INDEX IF NOT EXISTS user_monthly_month ON user_monthly (app, month);

-- One query per user and month: the counts, the change against the user's previous calendar
-- month (a month without a row counts as zeros; NULL in the user's first month), the month's
-- number since the user's first month (1 = the first), and the percentile among the app's
-- active users of that month. Active = total_actions > 0. The percentile is
-- 100 * percent_rank() over total_actions ascending within (app, month): (rank - 1) / (n - 1),
-- where tied users share the lowest rank; 0 for the least active (and for a month's only active
-- user), 100 for the most active; NULL for a user with no action that month.
CREATE OR REPLACE VIEW user_monthly_report AS
WITH ranked AS (
    SELECT app, user_id, month,
           100 * percent_rank() OVER (PARTITION BY app, month ORDER BY total_actions)
               AS actions_percentile,
           count(*) OVER (PARTITION BY app, month) AS active_users
    FROM user_monthly
    WHERE total_actions > 0
), firsts AS (
    SELECT app, user_id, min(month) AS first_month FROM user_monthly GROUP BY app, user_id
)
SELECT m.app, m.user_id, m.month,
       (m.month + interval '1 month' - interval '1 day')::date AS month_end,
       ((extract(year FROM m.month) - extract(year FROM f.first_month)) * 12
        + extract(month FROM m.month) - extract(month FROM f.first_month))::int + 1
           AS month_number,
       m.total_actions, m.habits_completed, m.journal_entries, m.goals_progress, m.streak_max,
       m.features_used, m.achievements,
       CASE WHEN m.month > f.first_month
            THEN m.total_actions - coalesce(p.total_actions, 0) END AS total_actions_change,
       CASE WHEN m.month > f.first_month
            THEN m.habits_completed - coalesce(p.habits_completed, 0) END AS habits_completed_change,
       CASE WHEN m.month > f.first_month
            THEN m.journal_entries - coalesce(p.journal_entries, 0) END AS journal_entries_change,
       CASE WHEN m.month > f.first_month
            THEN m.goals_progress - coalesce(p.goals_progress, 0) END AS goals_progress_change,
       CASE WHEN m.month > f.first_month
            THEN m.streak_max - coalesce(p.streak_max, 0) END AS streak_max_change,
       CASE WHEN m.month > f.first_month
            THEN m.features_used - coalesce(p.features_used, 0) END AS features_used_change,
       CASE WHEN m.month > f.first_month
            THEN m.achievements - coalesce(p.achievements, 0) END AS achievements_change,
       r.actions_percentile, r.active_users,
       m.updated_at
FROM user_monthly m
JOIN firsts f ON f.app = m.app AND f.user_id = m.user_id
LEFT JOIN user_monthly p
       ON p.app = m.app AND p.user_id = m.user_id AND p.month = (m.month - interval '1 month')::date
LEFT JOIN ranked r ON r.app = m.app AND r.user_id = m.user_id AND r.month = m.month;
