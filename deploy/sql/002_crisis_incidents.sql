-- Crisis incidents: the audit log seed 000 requires (§3.6, §4.5). One row per incident, upserted
-- with its latest state; no message text, and the user only as a hashed id.
CREATE TABLE IF NOT EXISTS crisis_incidents (
    incident_id      text        PRIMARY KEY,
    app              text        NOT NULL,
    user_hash        text        NOT NULL,
    level            text        NOT NULL,
    markers          text[]      NOT NULL DEFAULT '{}',
    detections       int         NOT NULL,
    confidence       double precision,
    detected_at      timestamptz NOT NULL,
    deadline_at      timestamptz NOT NULL,
    escalated_at     timestamptz,
    closed_at        timestamptz,
    action           text,
    response_seconds double precision,
    sla_breached     boolean     NOT NULL,
    alerted_at       timestamptz,
    declines         int         NOT NULL DEFAULT 0,
    status           text        NOT NULL CHECK (status IN ('open', 'escalated', 'expired', 'orphan')),
    pages            boolean     NOT NULL,
    anomalies        text[]      NOT NULL DEFAULT '{}',
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS crisis_incidents_app_detected ON crisis_incidents (app, detected_at DESC);
CREATE INDEX IF NOT EXISTS crisis_incidents_open ON crisis_incidents (app) WHERE status = 'open';
