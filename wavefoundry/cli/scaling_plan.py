"""``wavefoundry scaling ...``: placeholder registration, replaced by the module's owner."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Adds this module's ``scaling`` subcommands to ``commands``."""
