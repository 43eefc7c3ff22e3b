import sys

from nobound.cli import main

sys.exit(main())
