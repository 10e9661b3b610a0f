"""The GP2BM benchmark driver: runs the MLPerf sets, scores them, builds the submission tree."""
