"""Providers: one module per backend, each translating the store protocol to one SDK and nothing else."""
