"""Full-bucket migration and verification: `python -m migrate`."""
