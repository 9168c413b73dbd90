# Image for `streamgmm run` (and `streamgmm produce`). Build from the repository root:
#   docker build -t streamgmm .
#   docker run --rm streamgmm run --bootstrap-servers broker:9092 --input-topic ticks
# No Docker engine is available where this project is tested: CI lints this file (hadolint)
# and checks the numba cache step with the same command on a core install
# (.ci/check_core_install.py), but does not build the image.
FROM python:3.11-slim

# The core install only (no [demo] extra). numba's kernels are compiled at build time into
# NUMBA_CACHE_DIR for a generic x86-64 CPU (NUMBA_CPU_NAME=generic, kept at run time so the
# cache matches on any host), so a container's first output does not wait 30-60 s for the
# compiler. A container must bind all interfaces for its metrics to be scraped from outside,
# hence STREAMGMM_METRICS_HOST.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/opt/streamgmm/numba-cache \
    NUMBA_CPU_NAME=generic \
    STREAMGMM_METRICS_HOST=0.0.0.0 \
    STREAMGMM_METRICS_PORT=9464

WORKDIR /src
# 1. Dependencies, in their own layer: rebuilt only when the lock changes, not on every source
#    edit. deploy/requirements.lock pins every core dependency with its hashes, so a rebuild
#    installs the same releases (CI installs its core environment from the same file).
COPY deploy/requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

# 2. The package itself (no dependency resolution: they are all in the layer above).
COPY pyproject.toml README.md LICENSE ./
COPY streamgmm ./streamgmm
RUN pip install --no-deps . && rm -rf /src

# 3. Compile and cache the kernels, from outside the source tree so the installed package is
#    the one compiled; the runtime user may add specialisations (event streams) to the cache.
WORKDIR /tmp
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent streamgmm \
    && python -m streamgmm._precompile \
    && chown -R 10001:10001 /opt/streamgmm/numba-cache

USER 10001:10001
EXPOSE 9464
# Healthy while the metrics endpoint answers (the service serves it from start-up to exit).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ['STREAMGMM_METRICS_PORT'], timeout=4)"]
ENTRYPOINT ["streamgmm"]
CMD ["run"]
