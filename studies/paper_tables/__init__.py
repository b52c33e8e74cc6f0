"""The paper's Tables 1 to 3 on the embedded model, read from ``data/paper_tables`` beside ``data/paper``."""
