"""`python -m proxy pull|ls|rm`; see proxy/cli/commands.py."""
import sys

from proxy.cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
