"""Toy blobs: a task outside tf_gp2bm that classifies 2-D points of generated Gaussian blobs with a tiny MLP."""
