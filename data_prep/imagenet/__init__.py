"""ImageNet (ILSVRC-2012) -> the TFRecords and manifest `--task=resnet` reads: `python -m data_prep.imagenet`."""
