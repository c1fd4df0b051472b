"""`secret-agent exec`: the fast path, one fetch, or `--watch` (see each module).

Empty on purpose: the fast path imports only what it needs.
"""
