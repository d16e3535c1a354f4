# notifier in one container: `docker build -t notifier . && docker run -p 8004:8004 notifier`.
# Without MONGO_URL / AMQP_URL it runs SecantusDB and Debian's RabbitMQ inside, supervised by notifier,
# with their data under /data (mount a volume there to keep it).
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HTTP_PORT=8004 \
    NOTIFIER_DATA_DIR=/data \
    ASSETS_DIR=/app/assets

# Debian stable fixes the versions of these packages.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends rabbitmq-server tini curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 notifier \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/notifier --shell /usr/sbin/nologin notifier \
    && mkdir -p /data /app \
    && chown notifier:notifier /data /app

WORKDIR /app

# Where pip and the asset fetch reach the network, for builds behind a proxy or without one (see the README):
# pip's index (PIP_INDEX_URL) or a wheelhouse mounted into the build (PIP_FIND_LINKS with PIP_NO_INDEX=1),
# and the CA bundle of a TLS-inspecting proxy for pip (PIP_CERT) and for the ReDoc download (SSL_CERT_FILE).
# Unset, each keeps its default (PyPI, the npm registry, the image's own CA bundle).
ARG PIP_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ARG PIP_CERT
ARG SSL_CERT_FILE

# Dependencies first, so a code change does not reinstall them (their ranges are in setup.py, their exact
# versions in constraints.txt).
COPY setup.py README.md constraints.txt ./
COPY notifier/__init__.py notifier/__init__.py
RUN pip install -c constraints.txt ".[embedded]" && pip uninstall -y notifier

COPY notifier notifier
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN pip install --no-deps . \
    && notifier fetch-assets \
    && chown -R notifier:notifier /app/assets

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8004
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "curl -fsS http://127.0.0.1:${HTTP_PORT}/readyz || exit 1"]
ENTRYPOINT ["tini", "--", "docker-entrypoint.sh"]
CMD ["serve"]
