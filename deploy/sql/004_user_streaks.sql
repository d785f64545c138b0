-- Streaks (issue 4): the latest run of qualifying days of each user and streak type. A streak
-- is alive while current_end is within grace_days + 1 of today (see the plan's streaks).
CREATE TABLE IF NOT EXISTS user_streaks (
    app            text        NOT NULL,
    user_id        text        NOT NULL,
    streak_type    text        NOT NULL,
    current_length int         NOT NULL,
    record_length  int         NOT NULL,
    current_start  date        NOT NULL,
    current_end    date        NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, user_id, streak_type)
);
CREATE INDEX IF NOT EXISTS user_streaks_type_end ON user_streaks (app, streak_type, current_end);
