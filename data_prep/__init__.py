"""Offline dataset and checkpoint preparation (allowed off the clock: MLPerf rules, 'Data preprocessing')."""
