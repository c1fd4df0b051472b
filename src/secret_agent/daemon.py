"""`secret-agent run`: sync once (`--once`) or keep syncing (the daemon).

Composes config, logging, one pass and its report, and turns the pass's result into
an exit code. Holds no policy a pure module could hold.
"""

from __future__ import annotations

from secret_agent import logs
from secret_agent.config import Config
from secret_agent.errors import ConfigError
from secret_agent.report import log_report
from secret_agent.sync import make_client, run_pass

EXIT_OK = 0
EXIT_PARTIAL = 1


def run_once(config: Config) -> int:
    """One full pass; 0 only if every secret applied, 1 if some were refused or failed.

    Raises:
        CoderError, ValueSourceError, LedgerError, CredentialsError: the pass could not
            run; nothing on disk was changed.
    """
    with make_client(config) as client:
        report = run_pass(config, client)
    log_report(report)
    return EXIT_OK if report.ok else EXIT_PARTIAL


def cmd_run(config: Config, *, once: bool) -> int:
    logs.configure(level=config.log.level, fmt=config.log.format)
    if not once:
        # The long-running daemon (polling, backoff, signals, systemd notify) is the
        # next piece of work; until it lands, say so rather than pretend.
        raise ConfigError("the long-running daemon is not built yet; use `run --once`")
    return run_once(config)
