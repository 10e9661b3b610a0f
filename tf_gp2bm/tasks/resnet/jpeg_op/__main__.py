"""python -m tf_gp2bm.tasks.resnet.jpeg_op: build (or find) the fused image op and run its self-check."""
import sys

from tf_gp2bm.tasks.resnet.jpeg_op import main

sys.exit(main())
