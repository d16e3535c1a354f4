#!/bin/sh
# Entrypoint of the notifier image: `serve` (the default) uses the embedded SecantusDB and RabbitMQ
# unless MONGO_URL / AMQP_URL name external servers; any other arguments run that notifier command.
set -eu

data_dir="${NOTIFIER_DATA_DIR:-/data}"

if [ -z "${AMQP_URL:-}" ]; then
    export EMBEDDED_RABBITMQ=true
    export EMBEDDED_RABBITMQ_DIR="${EMBEDDED_RABBITMQ_DIR:-$data_dir/rabbitmq}"
    export AMQP_URL="amqp://guest:guest@127.0.0.1:${EMBEDDED_RABBITMQ_PORT:-5672}/"
fi
if [ -z "${MONGO_URL:-}" ]; then
    export EMBEDDED_DB_DIR="${EMBEDDED_DB_DIR:-$data_dir/db}"
fi

# notifier stops the embedded services itself on SIGTERM, after draining its consumers.
[ "$#" -gt 0 ] || set -- serve
exec notifier "$@"
