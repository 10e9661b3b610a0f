"""Small generated data sets (and a BERT starting checkpoint) for the CPU smoke configs."""
