"""The import path of rayalign's serving application for `serve deploy serve/config.yaml` and the
KubeRay RayService in k8s/ (`import_path: serve.app:build_app`, `args`: the ServeSettings).

The application itself is built in rayalign/serving/app.py, inside the package, so that
`rayalign serve` works wherever rayalign is installed; this module only names it.
"""

from rayalign.serving.app import build_app

__all__ = ["build_app"]
