"""The OpenAI-compatible fine-tuning service: files and fine-tuning jobs per tenant.

This package holds the state layer (database and stored files, no HTTP, no Ray): `db` the
tables, `store` what a request or the job runner does to them, `objects` their OpenAI JSON
shapes, `errors` what the HTTP layer maps to OpenAI's error bodies.
"""
