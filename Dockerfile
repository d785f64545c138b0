# Pulse: one image for `pulse worker`, `pulse gateway` and `pulse topics create`.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PULSE_STATE_DIR=/var/lib/pulse

WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY agents ./agents
COPY tables ./tables
COPY sinks ./sinks
# Migrations are read from the source tree (sinks/postgres.py: <repo>/deploy/sql), hence the
# editable install.
COPY deploy/sql ./deploy/sql
RUN pip install -e . \
 && useradd --system --uid 10001 --no-create-home --home-dir /var/lib/pulse pulse \
 && mkdir -p /var/lib/pulse \
 && chown pulse /var/lib/pulse

# Faust creates its data directory in the working directory, and the worker records its
# /metrics port under PULSE_STATE_DIR: both must be writable by the unprivileged user
# (/app is root's).
WORKDIR /var/lib/pulse
# Numeric, so Kubernetes' runAsNonRoot can verify it (deploy/k8s uses runAsUser 10001).
USER 10001
# 9464: a worker's /metrics; 8088: the gateway (API, /healthz, /readyz, /metrics).
EXPOSE 9464 8088
ENTRYPOINT ["pulse"]
CMD ["worker"]
