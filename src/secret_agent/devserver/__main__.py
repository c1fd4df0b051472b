"""`python -m secret_agent.devserver [flags]` is `secret-agent dev-server [flags]`."""

from __future__ import annotations

import argparse
import sys

from secret_agent.devserver.server import add_arguments, main

parser = argparse.ArgumentParser(
    prog="secret-agent dev-server",
    description="A local Coder-compatible user-secrets server for trying and testing the agent.",
)
add_arguments(parser)
raise SystemExit(main(parser.parse_args(), sys.stdout))
