"""`secret-agent run`: the daemon, as parts in one TaskGroup (see `run`).

Empty on purpose: `run --once` imports `run` and none of the daemon's parts.
"""
