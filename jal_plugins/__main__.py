import sys

from jal_plugins.cli import main

sys.exit(main())
