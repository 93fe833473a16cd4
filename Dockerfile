# One image for every process: `onlinematch serve` (default) and `onlinematch consume`; with
# `--build-arg EXTRAS=[offline]`, the trainer image for `onlinematch train` (torch; add
# `--build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu` for CPU-only wheels).
# Serving never imports torch, so the default image does not carry it.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv
COPY pyproject.toml README.md ./
COPY app ./app
COPY bandits ./bandits
COPY streaming ./streaming
COPY offline ./offline
ARG EXTRAS=""
ARG PIP_EXTRA_INDEX_URL=""
RUN pip install ".${EXTRAS}" && useradd --system --uid 10001 onlinematch
USER onlinematch
ENV HOST=0.0.0.0 PORT=8000 BUNDLE_DIR=/bundles
EXPOSE 8000
CMD ["onlinematch", "serve"]
