"""The Serve config and the KubeRay RayService run the same application, and both are valid:
the RayService against KubeRay's CRD schema (../shared/kuberay-crds), the application args
against ServeSettings."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from rayalign.cli import main
from rayalign.serving.settings import APP_NAME, ServeSettings, read_serve_config

ROOT = Path(__file__).parent.parent
CRDS = ROOT.parent / "shared" / "kuberay-crds"


def crd_schema(kind: str) -> dict:
    for file in CRDS.glob("ray.io_*.yaml"):
        crd = yaml.safe_load(file.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            return next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
    raise LookupError(f"no CRD of kind {kind} in {CRDS}")


def rayalign_app(serve_config: dict) -> dict:
    return next(a for a in serve_config["applications"] if a["name"] == APP_NAME)


def test_the_rayservice_fits_kuberays_schema_and_runs_the_serve_config_application():
    manifest = yaml.safe_load((ROOT / "k8s" / "rayservice.yaml").read_text())
    jsonschema.validate(manifest, crd_schema(manifest["kind"]))
    in_cluster = rayalign_app(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    local = rayalign_app(yaml.safe_load((ROOT / "serve" / "config.yaml").read_text()))
    assert in_cluster["import_path"] == local["import_path"] == "serve.app:build_app"
    ServeSettings.model_validate(in_cluster["args"])
    ServeSettings.model_validate(local["args"])


def test_a_broken_manifest_fails_the_schema():
    manifest = yaml.safe_load((ROOT / "k8s" / "rayservice.yaml").read_text())
    del manifest["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]
    with pytest.raises(jsonschema.ValidationError, match="template"):
        jsonschema.validate(manifest, crd_schema("RayService"))


def test_serve_config_args_are_checked_before_anything_starts(tmp_path, capsys):
    config = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())
    args, http = read_serve_config(str(ROOT / "serve" / "config.yaml"), runs_dir="elsewhere")
    assert args["runs_dir"] == "elsewhere" and http == {"host": "127.0.0.1", "port": 8000}
    rayalign_app(config)["args"]["engine"]["dtyp"] = "bfloat16"
    broken = tmp_path / "config.yaml"
    broken.write_text(yaml.safe_dump(config))
    assert main(["serve", "--config", str(broken)]) == 2
    assert "engine.dtyp: Extra inputs are not permitted" in capsys.readouterr().err
    assert main(["serve", "--config", str(tmp_path / "missing.yaml")]) == 2
