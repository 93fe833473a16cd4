# One image for every process: `onlinematch serve` (default) and `onlinematch consume`.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv
COPY pyproject.toml README.md ./
COPY app ./app
COPY bandits ./bandits
COPY streaming ./streaming
COPY offline ./offline
RUN pip install . && useradd --system --uid 10001 onlinematch
USER onlinematch
ENV HOST=0.0.0.0 PORT=8000 BUNDLE_DIR=/bundles
EXPOSE 8000
CMD ["onlinematch", "serve"]
