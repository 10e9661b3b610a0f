import sys

from data_prep.wikipedia.cli import main

sys.exit(main())
