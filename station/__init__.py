"""The station: verifies, approves and runs trains next to a hospital's data."""
