# o2c-bot: a small production image. `o2c serve` by default; `o2c migrate` as a one-off:
#   docker build -t o2c-bot .
#   docker run --rm --env-file .env o2c-bot migrate
#   docker run -d --env-file .env -p 3000:3000 o2c-bot
# See README.md, "Production". Settings are environment variables (README, "Settings").

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE alembic.ini app.py ./
COPY api ./api
COPY blocks ./blocks
COPY bot ./bot
COPY handlers ./handlers
COPY migrations ./migrations
COPY models ./models
COPY sandbox ./sandbox
COPY workflows ./workflows
RUN python -m venv /opt/o2c && /opt/o2c/bin/pip install --no-compile . \
    && find /opt/o2c -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11-slim
ENV PATH=/opt/o2c/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    PORT=3000 O2C_LOG_FORMAT=json
COPY --from=build /opt/o2c /opt/o2c
RUN useradd --system --uid 10001 --home-dir /app --create-home o2c
WORKDIR /app
USER 10001
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('PORT', '3000'), timeout=2)"]
ENTRYPOINT ["o2c"]
CMD ["serve"]
