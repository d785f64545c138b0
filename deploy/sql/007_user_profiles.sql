-- Retention profiles (issue 4 §4, seed 001): one row per user, every time-dependent value
-- relative to evaluated_at. Written on each relevant event and by the periodic sweep.
CREATE TABLE IF NOT EXISTS user_profiles (
    app                     text        NOT NULL,
    user_id                 text        NOT NULL,
    evaluated_at            timestamptz NOT NULL,
    lifecycle_day           int         NOT NULL,
    segment                 text        NOT NULL,
    churn_risk              text        NOT NULL,
    risk_score              int         NOT NULL,
    retention_score         int         NOT NULL,
    days_active_30          int         NOT NULL,
    feature_diversity       double precision NOT NULL,
    last_active_at          timestamptz,
    days_inactive           int,
    return_count            int         NOT NULL,
    longest_inactive_period int         NOT NULL,
    first_week_active       int         NOT NULL,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, user_id)
);
CREATE INDEX IF NOT EXISTS user_profiles_segment ON user_profiles (app, segment, churn_risk);
