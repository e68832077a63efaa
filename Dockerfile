# syntax=docker/dockerfile:1
# The worker image (default command) and the migration task (command override:
# python -m migrate). Multi-stage: wheels are built in the first stage, the runtime
# stage holds only the virtualenv and runs as a non-root user.

FROM python:3.12.8-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY replicator ./replicator
COPY lambda_enqueue ./lambda_enqueue
COPY worker ./worker
COPY migrate ./migrate
COPY local_stack ./local_stack
RUN pip install --no-cache-dir .

FROM python:3.12.8-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="lyve-replicator" \
      org.opencontainers.image.description="S3 to Lyve Cloud replication worker and migration"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOG_FORMAT=json
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /tmp
# The worker has no port to probe; ECS restarts it when the process exits.
HEALTHCHECK NONE
STOPSIGNAL SIGTERM
CMD ["python", "-m", "worker"]
