"""ResNet-50 v1.5 on ImageNet, MLPerf closed division (target 75.90 % top-1)."""
