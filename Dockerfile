# One Dockerfile for every service: `docker build --build-arg SERVICE=products-api
#   --build-arg MODULE=products_api.main:app -t knative-playbook/products-api .`
# (`make images` builds them all with the right arguments, compose passes them too).
#
# The builder installs only that service's locked dependencies into /app/.venv; the runtime
# stage is the slim Python base plus that venv, run by a non-root user. No RUN --mount, so the
# classic builder (which docker-compose v1 uses) builds it as well as BuildKit does.

# Overridable so that a machine without registry access can substitute a locally imported
# base (scripts/check-images does); both stages must share it, the venv links to its python.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

# The steps before `ARG SERVICE` do not depend on the service, so every image's build
# reuses their cached layers.

# binutils for `strip` only; it stays in this stage. Wheels such as uvloop ship their
# extension modules with debug info, a third of what the venv would otherwise weigh.
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*

# uv from PyPI into a throwaway venv: works on images whose system Python refuses pip (PEP 668).
ARG UV_VERSION=0.13.9
RUN python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY services ./services

ARG SERVICE
# Fail early with the usage rather than deep inside uv.
RUN test -n "${SERVICE}" \
    || { echo "build with --build-arg SERVICE=<folder under services/>" >&2; exit 1; }

# EXTRA_PACKAGES: workspace packages installed beside the service, for devplane, which runs
# the CronJobs' `python -m <job>` commands with its own interpreter.
ARG EXTRA_PACKAGES=""

# --package: this service and its dependencies only (fnkit comes in as one of them);
# --no-editable: the venv holds real copies, so the sources need not follow it.
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-editable --package "${SERVICE}" \
       $(for p in ${EXTRA_PACKAGES}; do printf -- '--package %s ' "$p"; done) \
    && find /app/.venv -name '*.so*' -type f -exec strip --strip-debug {} +

ARG MODULE=""
# A typo in MODULE should break the build, not the first deployment.
RUN test -z "${MODULE}" || /app/.venv/bin/python -c \
    "import importlib.util, sys; m = sys.argv[1].partition(':')[0]; \
sys.exit(0 if importlib.util.find_spec(m) else f'no module {m} in {sys.argv[2]}')" \
    "${MODULE}" "${SERVICE}"


FROM ${PYTHON_IMAGE}

# Fixed ids so that volume permissions and securityContext.runAsUser can rely on them.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app

ARG SERVICE
ARG MODULE=""
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG DESCRIPTION="A knative-playbook function."
ARG SOURCE=""

LABEL org.opencontainers.image.title="knative-playbook-${SERVICE}" \
      org.opencontainers.image.description="${DESCRIPTION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.vendor="knative-playbook"

# Owned by root and read-only to the app user: the code cannot be rewritten at run time.
COPY --from=builder /app/.venv /app/.venv

ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8080 \
    FNKIT_APP="${MODULE}"

WORKDIR /app
USER 10001:10001
EXPOSE 8080

# The same contract as `make dev`: fnkit-serve, port from PORT, settings from the environment.
# A shell only to expand FNKIT_APP; exec makes python PID 1 so SIGTERM reaches uvicorn.
# Jobs and one-shots replace this command (`python -m cleanup`, `python -m minio_source.setup`).
CMD ["/bin/sh", "-c", "exec fnkit-serve \"${FNKIT_APP:?this image has no default app; give a command}\""]
