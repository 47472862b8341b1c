import sys

from xnorinfer.cli import main

sys.exit(main())
