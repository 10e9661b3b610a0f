import sys

from data_prep.imagenet.cli import main

sys.exit(main())
