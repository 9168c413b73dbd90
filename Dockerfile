# Image for `streamgmm run`. Build from the repository root:
#   docker build -t streamgmm .
#   docker run --rm streamgmm run --bootstrap-servers broker:9092 --input-topic ticks
# Not built in CI: no Docker engine is available where this project is tested.
FROM python:3.11-slim

# numba caches compiled kernels and matplotlib its fonts: both get a writable place, since the
# installed package is read-only for the runtime user. A container must bind all interfaces
# for its metrics to be scraped from outside, hence STREAMGMM_METRICS_HOST.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    STREAMGMM_METRICS_HOST=0.0.0.0

WORKDIR /src
COPY pyproject.toml README.md ./
COPY streamgmm ./streamgmm
RUN pip install . && rm -rf /src

RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent streamgmm
USER 10001:10001
WORKDIR /tmp

EXPOSE 9464
ENTRYPOINT ["streamgmm"]
CMD ["run"]
