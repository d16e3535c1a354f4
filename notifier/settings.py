"""Every setting of the service, read once from the environment.

Each option is declared once here with its default and a help line; `config/notifier.env.example`
is generated from these declarations (`python -m notifier.settings`) and a test keeps them in sync.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .outbound import allowlist_entry


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be a whole number, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be <= {maximum}, got {value}")
        return value

    return parse


def _float(minimum: float = 0.0) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"must be a number, got {raw!r}") from None
        if value < minimum:
            raise ValueError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


def _str(raw: str) -> str:
    return raw.strip()


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _zone(raw: str) -> str:
    from .recurrence import check_timezone  # recurrence imports nothing of settings; this keeps it that way

    value = raw.strip()
    if reason := check_timezone(value):
        raise ValueError(f"{reason}, got {raw!r}")
    return value


def _url(*schemes: str, optional: bool = False) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if not value and optional:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.netloc:
            raise ValueError(f"must be a {' or '.join(schemes)} URL, got {raw!r}")
        return value.rstrip("/") if parts.scheme.startswith("http") else value

    return parse


def _list(item: Callable[[str], Any] = _str) -> Callable[[str], tuple]:
    def parse(raw: str) -> tuple:
        return tuple(item(part) for part in raw.split(",") if part.strip())

    return parse


JWT_ALGORITHMS = (
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


def _algorithms(raw: str) -> tuple:
    algorithms = _list()(raw)
    if not algorithms:
        raise ValueError("must name at least one algorithm")
    for name in algorithms:
        if name not in JWT_ALGORITHMS:
            raise ValueError(f"{name!r} is not allowed; choose from {', '.join(JWT_ALGORITHMS)}")
    return algorithms


def _pem_or_path(raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith("-----BEGIN"):
        try:
            with open(value, encoding="ascii") as handle:
                value = handle.read()
        except OSError as exc:
            raise ValueError(f"is neither a PEM key nor a readable file: {exc.strerror}") from None
    return value


def setting(default: str, help: str, parse: Callable[[str], Any] = _str, secret: bool = False):
    """Declare one option: `default` is written as it would be in the environment."""
    return field(
        default=parse(default), metadata={"raw_default": default, "help": help, "parse": parse, "secret": secret}
    )


@dataclass(frozen=True)
class Settings:
    # HTTP
    http_host: str = setting("0.0.0.0", "Address the HTTP server listens on.")
    http_port: int = setting("8004", "Port of the REST API, the admin and the docs.", _int(1, 65535))
    metrics_port: int = setting(
        "0",
        "Port serving /metrics without authentication, for a Prometheus scraper "
        "(0: none; admins can always read /metrics on HTTP_PORT).",
        _int(0, 65535),
    )
    metrics_host: str = setting("127.0.0.1", "Address of the metrics port (0.0.0.0 to scrape from elsewhere).")
    public_url: str = setting(
        "http://localhost:8004",
        "Base URL users reach this service at (used in unsubscribe links).",
        _url("http", "https"),
    )
    trust_proxy_headers: bool = setting(
        "false", "Take the client address from X-Forwarded-For/X-Real-IP (only behind a proxy that sets them).", _bool
    )
    admin_session_hours: float = setting("12", "How long an admin stays logged in to /admin/.", _float(0.05))
    max_body_bytes: int = setting("8388608", "Largest accepted JSON request body; larger gets 413.", _int(1024))
    max_form_bytes: int = setting(
        "65536",
        "Largest accepted admin form, and body of a request made before "
        "authentication (login, token); larger gets 413.",
        _int(1024),
    )
    max_upload_bytes: int = setting(
        "8388608", "Largest accepted admin form carrying a CSV file of recipients; larger gets 413.", _int(1024)
    )
    http_idle_timeout: float = setting(
        "60",
        "Seconds a connection may stay idle, or take to send a request's headers, before it is closed.",
        _float(0.1),
    )
    http_body_timeout: float = setting("60", "Seconds a client may take to send a request body.", _float(0.1))
    assets_dir: str = setting("./var/assets", "Where `notifier fetch-assets` puts ReDoc for /api/schema/redoc/.")
    max_recipients: int = setting("100000", "Most recipients one notification request may name.", _int(1))
    inline_recipients: int = setting(
        "500",
        "Most recipients of a create whose deliveries are stored before the answer (201); a bigger one is "
        "answered 202 at once and its deliveries are stored in the background.",
        _int(0),
    )
    default_timezone: str = setting(
        "UTC",
        "IANA time zone of a recipient whose user has none, for delivery at a local time (deliver_at_local).",
        _zone,
    )
    # MongoDB
    mongo_url: str = setting(
        "",
        "MongoDB URL. Empty: start an embedded SecantusDB server on loopback.",
        _url("mongodb", "mongodb+srv", optional=True),
    )
    mongo_db: str = setting("notifier", "Database name.")
    mongo_timeout_ms: int = setting(
        "3000", "How long a database call waits for the server before the API answers 503.", _int(100)
    )
    embedded_db_dir: str = setting("./var/db", "Data directory of the embedded SecantusDB server.")
    embedded_db_port: int = setting("0", "Port of the embedded SecantusDB server (0: a free port).", _int(0, 65535))
    # RabbitMQ
    amqp_url: str = setting("amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ URL.", _url("amqp", "amqps"))
    embedded_rabbitmq: bool = setting(
        "false",
        "Start Debian's RabbitMQ as a child of notifier on AMQP_URL's "
        "port (the single-container image turns this on when AMQP_URL is unset).",
        _bool,
    )
    embedded_rabbitmq_dir: str = setting("./var/rabbitmq", "Data directory of the embedded RabbitMQ node.")
    queue_prefix: str = setting("notifier.", "Prefix of every exchange and queue name.")
    queue_type: str = setting(
        "classic",
        "RabbitMQ queue type: classic, or quorum for a cluster (replicated; delay tiers dead-letter at least once). "
        "Quorum names gain a `quorum.` segment, so switching declares new queues: drain the old ones first.",
        _choice("classic", "quorum"),
    )
    publish_timeout: float = setting("10", "Seconds to wait for a publisher confirm.", _float(0.1))
    # Secrets and tokens
    secret_key: str = setting(
        "",
        "Root secret for signing (cookies, unsubscribe links, derived keys). "
        "Empty: generated once and kept in the database.",
        secret=True,
    )
    notifier_admin_username: str = setting(
        "", "First admin, created at startup when no admin has this username (for `docker run`)."
    )
    notifier_admin_password: str = setting("", "Password of that first admin (12 characters or more).", secret=True)
    admin_jwt_secret: str = setting("", "HS256 key of admin tokens. Empty: derived from SECRET_KEY.", secret=True)
    admin_jwt_ttl: int = setting("900", "Lifetime of an admin token in seconds.", _int(30))
    admin_session_max: int = setting(
        "43200",
        "Seconds after the password was given that an admin token can "
        "still be refreshed (the whole session's lifetime).",
        _int(60),
    )
    # Password checks (admin Basic, admin token, admin login page, client login/password)
    login_window: float = setting("900", "Seconds of one window of the password-attempt counters.", _float(1.0))
    login_account_limit: int = setting(
        "5",
        "Password attempts per account (known or not) from one address per "
        "LOGIN_WINDOW; more get 429 with Retry-After.",
        _int(1),
    )
    login_account_total_limit: int = setting(
        "100",
        "Password attempts per account from every address together "
        "per LOGIN_WINDOW; past it, addresses that already sent a wrong "
        "password for that account get 429.",
        _int(1),
    )
    login_address_limit: int = setting(
        "20", "Password attempts from one address per LOGIN_WINDOW; more get 429.", _int(1)
    )
    password_workers: int = setting(
        "1",
        "Threads running scrypt for password checks, off the event loop (each "
        "takes a CPU core while it runs: leave one for the event loop).",
        _int(1, 64),
    )
    password_queue: int = setting(
        "16", "Password checks that may wait for one of those threads; more get 429.", _int(0)
    )
    user_jwt_algorithms: tuple = setting(
        "HS256", "Algorithms accepted in end-user tokens (comma-separated; 'none' is never accepted).", _algorithms
    )
    user_jwt_secret: str = setting(
        "",
        "HS* key shared with the auth server. Empty: derived from SECRET_KEY (see `notifier user-token`).",
        secret=True,
    )
    user_jwt_public_key: str = setting(
        "", "PEM public key (or a path to one) for RS*/PS*/ES*/EdDSA end-user tokens.", _pem_or_path
    )
    user_jwt_issuer: str = setting("", "Required `iss` of end-user tokens (empty: not checked).")
    user_jwt_audience: str = setting("", "Required `aud` of end-user tokens (empty: not checked).")
    user_id_claim: str = setting("sub", "Claim of the end-user token holding the user id.")
    jwt_leeway: int = setting("30", "Clock skew in seconds tolerated for exp/nbf.", _int(0, 600))
    # Delivery pipeline
    consumers_min: int = setting("1", "Fewest consumer processes (counting other instances').", _int(0))
    consumers_max: int = setting("4", "Most consumer processes (counting other instances').", _int(1))
    consumers_start: int = setting("2", "Consumer processes started with the server.", _int(0))
    pacing_batch: int = setting(
        "100", "Messages one notification may put on the work queue per PACING_INTERVAL; 0 turns pacing off.", _int(0)
    )
    pacing_interval: float = setting("0.1", "Seconds between two paced batches.", _float(0.01))
    max_attempts: int = setting("5", "Send attempts before a delivery is failed and parked.", _int(1))
    retry_delays: tuple = setting(
        "5,30,120,600", "Seconds to wait before retry 1, 2, ... (the last repeats).", _list(_float(0.05))
    )
    consumer_batch: int = setting("100", "Most messages a consumer claims and sends as one batch.", _int(1, 1000))
    write_chunk: int = setting(
        "25",
        "Most deliveries one database write takes (claims, outcomes, queued marks) while express deliveries are "
        "about: for 10 s after a process handled one. The embedded database holds a collection's lock for the "
        "whole of a write and an express claim waits for it; shorter writes cost regular throughput meanwhile.",
        _int(1, 1000),
    )
    consumer_batch_wait: float = setting("0.02", "Seconds a consumer waits to fill a regular batch.", _float(0.0))
    lease_seconds: float = setting(
        "300",
        "How long a claimed delivery stays with its consumer before the lease reconciler hands it to another.",
        _float(1.0),
    )
    backlog_per_consumer: int = setting("2000", "Queued messages per consumer before the pool grows.", _int(1))
    journal_dir: str = setting(
        "./var/journal",
        "Where consumers note what they sent before it is recorded, so a killed consumer never causes a second send.",
    )
    outbox_grace: float = setting("30", "Seconds before an unconfirmed delivery is published again.", _float(0.0))
    # Channels
    smtp_host: str = setting("127.0.0.1", "SMTP server host.")
    smtp_port: int = setting("25", "SMTP server port.", _int(1, 65535))
    smtp_username: str = setting("", "SMTP login (empty: no AUTH).")
    smtp_password: str = setting("", "SMTP password.", secret=True)
    smtp_ssl: bool = setting("false", "Connect with implicit TLS (usually port 465).", _bool)
    smtp_starttls: bool = setting("false", "Upgrade the connection with STARTTLS.", _bool)
    smtp_from: str = setting("notifier@localhost", "From address of emails.")
    smtp_timeout: float = setting("30", "Seconds an SMTP command may take.", _float(0.1))
    smtp_connections: int = setting(
        "4", "SMTP connections per consumer for regular mail (express has its own).", _int(1, 100)
    )
    telegram_api_url: str = setting("https://api.telegram.org", "Telegram Bot API base URL.", _url("http", "https"))
    telegram_bot_token: str = setting(
        "", "Telegram bot token (empty: telegram deliveries fail as not configured).", secret=True
    )
    webhook_secret: str = setting(
        "", "HMAC key of the X-Notifier-Signature header. Empty: derived from SECRET_KEY.", secret=True
    )
    http_timeout: float = setting("10", "Seconds a webhook, Telegram or users-service call may take.", _float(0.1))
    outbound_allow: tuple = setting(
        "",
        "Hosts, addresses or networks (CIDR), comma-separated, that webhooks may "
        "reach although they are loopback or private (internal hooks; empty: public "
        "addresses only).",
        _list(allowlist_entry),
    )
    users_service_url: str = setting(
        "",
        'External user service: POST {"ids": [...]} returns contacts of users '
        "with none stored here (empty: stored contacts only).",
        _url("http", "https", optional=True),
    )
    users_service_token: str = setting("", "Authorization header value sent to USERS_SERVICE_URL.", secret=True)
    users_cache_ttl: float = setting("300", "Seconds contacts from the user service are cached.", _float(0.0))
    # Scheduler
    scheduler_tick: float = setting("1", "Seconds between two checks for due schedules.", _float(0.05))
    schedule_min_interval: int = setting("60", "Shortest interval_seconds a schedule may have.", _int(1))
    schedule_run_lease: float = setting(
        "300",
        "Seconds a firing may take before another instance takes it over (its instance is taken for stopped).",
        _float(1.0),
    )
    outbox_sweep_interval: float = setting("10", "Seconds between two outbox sweeps.", _float(0.05))
    wake_interval: float = setting(
        "0.5",
        "Seconds between two runs of the scheduled wake-up, which publishes the deliveries whose send_at came.",
        _float(0.05),
    )
    materialize_interval: float = setting(
        "5", "Seconds between two looks for background fan-outs left unfinished (by a restart).", _float(0.05)
    )
    materialize_lease: float = setting(
        "15",
        "Seconds a background fan-out stays with the process storing its deliveries without a sign of progress "
        "before another takes it over.",
        _float(0.1),
    )
    reconcile_interval: float = setting(
        "30",
        "Seconds between two lease reconciler runs (expired consumer leases, then the lost-message finder).",
        _float(0.05),
    )
    pool_check_interval: float = setting("5", "Seconds between two consumer pool checks.", _float(0.05))
    # Retention (services/retention.py): how long history is kept, deleted continuously in short batches
    # (each a bounded read and a delete of at most RETENTION_BATCH by id), so that neither a year of history
    # nor its deletion slows the service. Only final deliveries (sent, failed, skipped) are deleted; a
    # notification goes after its deliveries, so it lives as long as the longer of the two settings.
    retention_deliveries_days: int = setting(
        "90",
        "Days a final delivery (sent, failed, skipped) is kept; 0: forever (and so are the notifications).",
        _int(0),
    )
    retention_notifications_days: int = setting(
        "90",
        "Days a notification is kept (at least as long as its deliveries; never while a schedule fires it "
        "or a delivery is not final); 0: forever.",
        _int(0),
    )
    retention_audit_days: int = setting("365", "Days an audit log entry is kept; 0: forever.", _int(0))
    retention_interval: float = setting("10", "Seconds between two retention runs.", _float(0.05))
    retention_batch: int = setting(
        "100", "Documents per retention delete (each delete is one short write).", _int(1, 10000)
    )
    counts_maintained: bool = setting(
        "true",
        "Keep each notification's counts by status and reason as its deliveries change (off: every read of a "
        "notification counts all its deliveries).",
        _bool,
    )
    counts_reconcile_interval: float = setting(
        "10", "Seconds between two counts reconciler runs (counts recomputed from the deliveries).", _float(0.05)
    )
    counts_quiet: float = setting(
        "5", "Seconds a notification's counts must stay unchanged before the counts reconciler checks them.", _float()
    )
    counts_recheck: float = setting(
        "300",
        "Seconds after which the counts reconciler checks again a notification still under way whose counts did "
        "not change.",
        _float(),
    )
    counts_reconcile_batch: int = setting(
        "20", "Most notifications the counts reconciler recomputes in one run.", _int(1, 1000)
    )
    # The live inbox (services/inbox.py, notifier/streams.py): each user's inbox changes as a numbered event log,
    # pushed to their open streams through RabbitMQ and resumable by event id.
    inbox_events_days: float = setting(
        "7",
        "Days an inbox event is kept for resuming a stream; a stream resuming from an older id is told to "
        "reload (a `reset` event).",
        _float(0.001),
    )
    stream_heartbeat: float = setting(
        "15", "Seconds between two heartbeats (SSE comments) on an idle inbox stream.", _float(0.05)
    )
    stream_ticket_ttl: int = setting(
        "60", "Seconds a stream ticket (POST /api/v1/me/stream/ticket) may be used to open a stream.", _int(5, 3600)
    )
    stream_limit: int = setting(
        "10000", "Most inbox streams one server holds; past it a new one is refused with 503.", _int(1, 1000000)
    )
    stream_write_timeout: float = setting(
        "30", "Seconds a stream's client may take to read what was written before the stream is closed.", _float(1)
    )
    stream_limit_per_user: int = setting(
        "10", "Most inbox streams one user may hold open on one server; one more closes the oldest.", _int(1, 1000)
    )
    inbox_demo: bool = setting(
        "false", "Serve the inbox bell demo page at /inbox/demo (an end user pastes their token there).", _bool
    )
    # Status events (services/events.py, services/event_endpoints.py): one per state change of a tracked delivery,
    # in a feed and POSTed, signed, to the event endpoints of the notification's author.
    event_log_interval: float = setting(
        "0.25", "Seconds between two runs of the event log, which publishes recorded state changes.", _float(0.01)
    )
    event_late_window: float = setting(
        "10",
        "Seconds the event log reads behind its cursor again, every as many seconds, for writes that became "
        "visible after later ones (concurrent writers on MongoDB); 0: never.",
        _float(0.0),
    )
    event_send_interval: float = setting("0.5", "Seconds between two runs of the event sender.", _float(0.01))
    event_batch: int = setting("50", "Events one round of the sender POSTs to an endpoint.", _int(1, 500))
    event_concurrency: int = setting(
        "10", "Requests one endpoint is sent at the same time (each event is a request of its own).", _int(1, 100)
    )
    event_retry_first: float = setting(
        "5", "Seconds an endpoint waits after a failed round; doubled per failed round.", _float(0.01)
    )
    event_retry_max: float = setting("3600", "Longest wait between two rounds of a failing endpoint.", _float(0.01))
    event_disable_after: float = setting(
        "259200", "Seconds an endpoint may keep failing before it is disabled (3 days).", _float(0.01)
    )
    event_secret_grace_max: int = setting(
        "604800", "Longest grace period of a rotated endpoint secret, in seconds (7 days).", _int(0)
    )
    event_endpoints_per_author: int = setting("10", "Most event endpoints one caller may have.", _int(1, 1000))
    events_days: float = setting("30", "Days a status event (and an endpoint's attempts) is kept.", _float(0.001))
    # Logging
    log_level: str = setting("info", "Log level.", _choice("debug", "info", "warning", "error"))
    log_format: str = setting("text", "Log line format.", _choice("text", "json"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every option from `environ` (default: os.environ); raise SettingsError naming the variable."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for option in dataclasses.fields(cls):
            name = option.name.upper()
            if name not in environ:
                continue
            try:
                values[option.name] = option.metadata["parse"](environ[name])
            except ValueError as exc:
                raise SettingsError(f"{name} {exc}") from None
        values.update(overrides)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.consumers_min > self.consumers_max:
            raise SettingsError(
                f"CONSUMERS_MIN must be <= CONSUMERS_MAX ({self.consumers_max}), got {self.consumers_min}"
            )
        if not self.consumers_min <= self.consumers_start <= self.consumers_max:
            raise SettingsError(
                f"CONSUMERS_START must be between CONSUMERS_MIN and CONSUMERS_MAX "
                f"({self.consumers_min}..{self.consumers_max}), got {self.consumers_start}"
            )
        asymmetric = [a for a in self.user_jwt_algorithms if not a.startswith("HS")]
        if asymmetric and not self.user_jwt_public_key:
            raise SettingsError(f"USER_JWT_PUBLIC_KEY is required for {', '.join(asymmetric)}")
        if not self.retry_delays:
            raise SettingsError("RETRY_DELAYS must name at least one delay")
        if bool(self.notifier_admin_username) != bool(self.notifier_admin_password):
            raise SettingsError("NOTIFIER_ADMIN_USERNAME and NOTIFIER_ADMIN_PASSWORD go together")

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables, for a child process to read back with from_env."""
        env = {}
        for option in dataclasses.fields(self):
            value = getattr(self, option.name)
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, tuple):
                value = ",".join(str(item) for item in value)
            env[option.name.upper()] = str(value)
        return env

    def replace(self, **changes: Any) -> Settings:
        settings = dataclasses.replace(self, **changes)
        settings.check()
        return settings


def example_file() -> str:
    """The commented example environment file, generated from the declarations above."""
    lines = [
        "# notifier settings: every variable, its default and what it does.",
        "# Copy to an env file (docker run --env-file, or `set -a; . FILE`) and uncomment what you change.",
        "# Secrets are read only from the environment; never commit them.",
        "",
    ]
    for option in dataclasses.fields(Settings):
        lines.append(f"# {option.metadata['help']}")
        lines.append(f"# {option.name.upper()}={option.metadata['raw_default']}")
        lines.append("")
    return "\n".join(lines)


def markdown_table() -> str:
    """The settings table of README.md, generated from the declarations above."""
    rows = ["| Variable | Default | What it does |", "| --- | --- | --- |"]
    for option in dataclasses.fields(Settings):
        default = option.metadata["raw_default"]
        rows.append(
            f"| `{option.name.upper()}` | {f'`{default}`' if default else '(empty)'} | "
            f"{option.metadata['help'].replace('|', '/')} |"
        )
    return "\n".join(rows) + "\n"


def write_docs(repo: str = ".") -> None:
    """Regenerate config/notifier.env.example and the README's settings table from the declarations."""
    root = os.path.abspath(repo)
    with open(os.path.join(root, "config", "notifier.env.example"), "w") as handle:
        handle.write(example_file())
    readme_path = os.path.join(root, "README.md")
    with open(readme_path) as handle:
        readme = handle.read()
    head, rest = readme.split("<!-- settings:start -->\n", 1)
    tail = rest.split("<!-- settings:end -->", 1)[1]
    with open(readme_path, "w") as handle:
        handle.write(f"{head}<!-- settings:start -->\n{markdown_table()}<!-- settings:end -->{tail}")


if __name__ == "__main__":
    if "--write-docs" in sys.argv:
        write_docs()
    else:
        sys.stdout.write(markdown_table() if "--markdown" in sys.argv else example_file())
