# Multi-stage: dependencies are built in a throw-away stage; the runtime image has no compiler, runs as an
# unprivileged user and works on a read-only root filesystem (scratch goes to /tmp).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt

FROM node:20-slim AS frontend
WORKDIR /front
COPY package.json package-lock.json .npmrc ./
RUN npm ci

FROM python:3.11-slim AS runtime
# No bytecode written at run time (a read-only root filesystem): the project's modules are compiled below, in the
# image, or every process would compile them again as it starts.
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 cdb \
    && useradd --system --uid 10001 --gid cdb --home-dir /app --shell /usr/sbin/nologin cdb
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY . /app
COPY --from=frontend /front/node_modules /app/node_modules
RUN DEBUG=true SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
    && python -m compileall -q -x /node_modules/ /app \
    && chmod 0755 /app/docker/entrypoint.sh
USER cdb:cdb
EXPOSE 8000 9808
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["web"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:8000/health', headers={'Host': 'localhost'}), timeout=3)"
