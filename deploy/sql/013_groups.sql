-- Group counts (seed 000 §3.11 B2B; tables/groups.py) with seed 000 §7.1's anonymity: HR sees
-- aggregates only, and only of groups with at least `min_size` members in the month. The
-- counters live in app_daily_counters (counter group:<kind>:joined|left|active, dimension = the
-- group id); this view is what dashboards and HR-facing tools read.
CREATE TABLE IF NOT EXISTS group_settings (
    app        text NOT NULL,
    kind       text NOT NULL,
    min_size   int  NOT NULL CHECK (min_size >= 2),
    PRIMARY KEY (app, kind)
);

CREATE OR REPLACE VIEW group_monthly AS
WITH counts AS (
    SELECT app, split_part(counter, ':', 2) AS kind, split_part(counter, ':', 3) AS measure,
           dimension AS group_id, day, value
    FROM app_daily_counters
    WHERE counter LIKE 'group:%'
), groups AS (
    SELECT app, kind, group_id, date_trunc('month', min(day))::date AS first_month
    FROM counts GROUP BY app, kind, group_id
), months AS (
    SELECT g.app, g.kind, g.group_id, m::date AS month
    FROM groups g,
         generate_series(g.first_month, date_trunc('month', now())::date, interval '1 month') m
), sized AS (
    SELECT m.app, m.kind, m.group_id, m.month,
           -- members at any time in the month: joined before it ends, not left before it began
           (SELECT coalesce(sum(c.value) FILTER (WHERE c.measure = 'joined'
                                                    AND c.day < m.month + interval '1 month'), 0)
                 - coalesce(sum(c.value) FILTER (WHERE c.measure = 'left' AND c.day < m.month), 0)
            FROM counts c
            WHERE c.app = m.app AND c.kind = m.kind AND c.group_id = m.group_id)::int AS members,
           coalesce((SELECT sum(c.value) FROM counts c
                     WHERE c.app = m.app AND c.kind = m.kind AND c.group_id = m.group_id
                       AND c.measure = 'active' AND c.day = m.month), 0)::int AS active_members
    FROM months m
)
SELECT s.app, s.kind, s.group_id, s.month, s.members, s.active_members,
       round(s.active_members::numeric / s.members, 4) AS utilization
FROM sized s
LEFT JOIN group_settings gs ON gs.app = s.app AND gs.kind = s.kind
WHERE s.members >= coalesce(gs.min_size, 10);
