"""ResNet-50 v1.5 on ImageNet, MLPerf closed division (the target and facts are in spec.py)."""
