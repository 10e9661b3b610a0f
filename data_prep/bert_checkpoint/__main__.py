import sys

from data_prep.bert_checkpoint.cli import main

sys.exit(main())
