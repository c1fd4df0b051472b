"""secret-agent: a Coder user's secrets in files and an env file, kept current.

Importing the package costs nothing: every heavy module is imported by the command
that needs it.
"""

from __future__ import annotations

__version__ = "0.1.0"
