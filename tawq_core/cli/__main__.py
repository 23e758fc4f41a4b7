"""``python -m tawq_core.cli`` (what torchrun runs, and the tests' fresh interpreters): the `tawq` command."""

from tawq_core.cli import main

main()
