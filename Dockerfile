# The Interchange image: one role per container (`worker`, `audit-writer`, or any CLI command).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY broker ./broker
COPY adapters ./adapters
COPY schemas ./schemas
COPY deploy ./deploy
COPY examples ./examples
RUN pip install --no-cache-dir . && useradd --system --uid 10001 interchange \
    && mkdir -p /app/var/audit /var/lib/interchange/audit \
    && chown -R interchange /app/var /var/lib/interchange
USER interchange
# Production settings by default (proven publishers, real keys required); development needs
# INTERCHANGE_CONFIG=/app/deploy/interchange.yaml or INTERCHANGE_DEVELOPMENT=1, and says so in its log.
ENV INTERCHANGE_CONFIG=/app/deploy/interchange.production.yaml
ENTRYPOINT ["interchange"]
CMD ["--help"]
