import sys

from wavefoundry.cli import main

sys.exit(main())
