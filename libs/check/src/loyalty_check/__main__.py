import sys

from loyalty_check.cli import main

sys.exit(main())
