import sys

from named_senderr.cli import main

sys.exit(main())
