FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY agents ./agents
COPY tables ./tables
COPY sinks ./sinks
COPY deploy/sql ./deploy/sql
RUN pip install --no-cache-dir -e . && useradd --system pulse
USER pulse
EXPOSE 9464
ENTRYPOINT ["pulse"]
CMD ["worker"]
