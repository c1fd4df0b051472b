"""`python -m secret_agent` is the same as the `secret-agent` command."""

from __future__ import annotations

from secret_agent.cli import main

raise SystemExit(main())
