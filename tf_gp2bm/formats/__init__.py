"""Record formats the tasks read: written by data_prep, defined here so the trainer never imports the tools."""
