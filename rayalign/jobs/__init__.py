"""Runs sent to a running Ray cluster as Ray jobs: staging their inputs, submitting, following."""
