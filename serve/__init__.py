"""rayalign's Ray Serve application, as `serve deploy` and KubeRay see it (app.py, config.yaml)."""
