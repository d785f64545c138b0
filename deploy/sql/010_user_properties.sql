-- Derived user properties (issue 9, seed 002 §2) and the subscription state of each user:
-- one row per (app, user), the whole set as JSON, rewritten whenever it changes.
CREATE TABLE IF NOT EXISTS user_properties (
    app          text        NOT NULL,
    user_id      text        NOT NULL,
    properties   jsonb       NOT NULL,
    subscription jsonb,  -- status, plan, amount, trial and paid period (apps with revenue)
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, user_id)
);
