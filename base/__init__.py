"""The bottom layer: what every other package may import and what imports nothing of the project (errors meant
for the person at the keyboard, the benchmark report writer)."""
