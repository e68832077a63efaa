"""The replication worker: drains the FIFO queue and reconciles each key to the target."""
