"""Training: the networks' training loop, the photo dataset it reads and the full training recipe (train_all.sh)."""
