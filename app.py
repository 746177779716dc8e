"""Entry point: build the app from settings and serve it (same as `o2c serve`)."""

import sys

from bot.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
