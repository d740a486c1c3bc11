"""The OpenAI-compatible fine-tuning service: files and fine-tuning jobs per tenant.

The state layer (database and stored files, no HTTP, no Ray): `db` the tables, `store` what a
request or the job runner does to them, `objects` their OpenAI JSON shapes, `errors` what the
HTTP layer maps to OpenAI's error bodies. Then `recipes` (an OpenAI job as a rayalign run) and
`runner` (each job through its lifecycle as a Ray job, via rayalign/jobs). The HTTP routes and
the runner's deployment are in rayalign/serving (finetune_api.py, finetune_runner.py).
"""
