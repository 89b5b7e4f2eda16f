"""The contract between the exporter (torch) and the engine (torch-free): what an exported graph is called, what it
reads and writes, and what its metadata says. Both sides import it; neither imports the other."""
