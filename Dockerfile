# One image for every process: `onlinematch serve` (default) and `onlinematch consume`; with
# `--build-arg LOCK=train`, the trainer image for `onlinematch train` (torch; its lock pins the
# CPU wheel 2.13.0+cpu, so add `--build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu`).
# Serving never imports torch, so the default image (requirements/serve.txt) does not carry it.
# Every dependency is the exact, hash-checked version of requirements/${LOCK}.txt (`make lock`);
# the project itself is then built by the locked setuptools, without dependencies.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv
ARG LOCK=serve
ARG PIP_EXTRA_INDEX_URL=""
COPY requirements ./requirements
RUN pip install --require-hashes -r requirements/${LOCK}.txt
COPY pyproject.toml README.md ./
COPY app ./app
COPY bandits ./bandits
COPY streaming ./streaming
COPY offline ./offline
RUN pip install --no-deps --no-build-isolation . && useradd --system --uid 10001 onlinematch
USER onlinematch
ENV HOST=0.0.0.0 PORT=8000 BUNDLE_DIR=/bundles
EXPOSE 8000
CMD ["onlinematch", "serve"]
