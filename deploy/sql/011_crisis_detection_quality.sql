-- Crisis detection quality per app and local day of the review (issue 9 §5; seed 000 safety
-- metrics: recall > 95 %, false-negative rate < 5 %, «Detection Accuracy — Precision / Recall»).
-- Over the plan counter `crisis_reviews` (crisis_reviewed events split by verdict). The day is
-- the review's: a missed crisis has no detection and so no incident day (tables/detection_quality.py).
-- Ratios are NULL when undefined (no detection reviewed, or no real crisis found that day).
CREATE OR REPLACE VIEW crisis_detection_quality AS
SELECT app, day, true_positives, false_positives, missed_crises,
       round(true_positives::numeric / nullif(true_positives + false_positives, 0), 4)
           AS precision,
       round(true_positives::numeric / nullif(true_positives + missed_crises, 0), 4) AS recall,
       round(missed_crises::numeric / nullif(true_positives + missed_crises, 0), 4)
           AS false_negative_rate
FROM (
    SELECT app, day,
           coalesce(sum(value) FILTER (WHERE dimension = 'true_positive'), 0)::int
               AS true_positives,
           coalesce(sum(value) FILTER (WHERE dimension = 'false_positive'), 0)::int
               AS false_positives,
           coalesce(sum(value) FILTER (WHERE dimension = 'missed_crisis'), 0)::int
               AS missed_crises
    FROM app_daily_counters
    WHERE counter = 'crisis_reviews'
    GROUP BY app, day
) AS reviews;
