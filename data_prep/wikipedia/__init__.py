"""Wikipedia -> the BERT pretraining TFRecords and manifests `--task=bert` reads: `python -m data_prep.wikipedia`."""
