"""`python -m harness` is the `bench` command."""

from harness.cli import main

main()
