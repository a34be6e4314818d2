# The Minato code location: one image for its gRPC code server and for every run task or pod
# (deploy/dagster.ecs.yaml, deploy/helm/values.yaml). Configuration comes from the environment
# only (README, "Production: environment variables"); no secret is baked in.
FROM python:3.11-slim

COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/minato/.venv \
    PATH=/opt/minato/.venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/dagster_home
WORKDIR /opt/minato

# Dependencies first, from the lock file only: this layer is reused until uv.lock changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project

COPY . .
# The dbt manifest and the cached Dagster specs are built into the image, not at start-up.
RUN uv sync --locked --no-dev && minato manifest && mkdir -p "$DAGSTER_HOME"

# dbt writes its target/ and logs/ at run time: the project belongs to the run user.
RUN useradd --uid 10001 --no-create-home minato && chown -R minato /opt/minato "$DAGSTER_HOME"
USER minato
EXPOSE 4000
CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "4000", "--module-name", "pipelines.definitions"]
