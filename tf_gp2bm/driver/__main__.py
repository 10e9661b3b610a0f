"""`python -m tf_gp2bm.driver ...` (what run_benchmark.sh calls)."""
import sys

from tf_gp2bm.driver.cli import main

sys.exit(main())
