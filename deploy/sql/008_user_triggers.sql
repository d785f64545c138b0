-- Re-engagement triggers (issue 4 §5, seed 001 UserTrigger): one row per trigger, its id a
-- digest of (app, user, type, due day). Status follows pending → sent / dismissed / expired.
CREATE TABLE IF NOT EXISTS user_triggers (
    trigger_id  text        PRIMARY KEY,
    app         text        NOT NULL,
    user_id     text        NOT NULL,
    type        text        NOT NULL,
    priority    text        NOT NULL,
    status      text        NOT NULL
                CHECK (status IN ('pending', 'sent', 'dismissed', 'expired')),
    context     jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
-- The bot's and the backend's questions: a user's pending triggers; pending ones by type.
CREATE INDEX IF NOT EXISTS user_triggers_user ON user_triggers (app, user_id, status);
CREATE INDEX IF NOT EXISTS user_triggers_pending ON user_triggers (app, type, created_at)
    WHERE status = 'pending';
