import sys

from negaug.cli import main

sys.exit(main())
