-- Retention profile, issue 4 follow-up (seed 001): the trial at evaluated_at (churn factor 4,
-- `is_trial AND days_active_30 < 4`) and the 30-day journey (RetentionProfile.current_milestone,
-- completed_milestones, completion_rate; API 2 `journey.next_milestone`). Definitions in
-- tables/journey.py and tables/trial.py. Rows written before this migration keep the defaults
-- until their next evaluation (every relevant event and the periodic sweep).
ALTER TABLE user_profiles
    ADD COLUMN IF NOT EXISTS is_trial             boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS trial_end_date       date,
    ADD COLUMN IF NOT EXISTS current_milestone    int,
    ADD COLUMN IF NOT EXISTS completed_milestones jsonb   NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN IF NOT EXISTS next_milestone       jsonb,
    ADD COLUMN IF NOT EXISTS completion_rate      double precision NOT NULL DEFAULT 0;
