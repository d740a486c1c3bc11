"""The Serve config and the KubeRay RayServices run the same application, and all are valid:
the RayService against KubeRay's CRD schema made strict (../shared/kuberay-crds, see
k8s_support.py), the application args against ServeSettings. The in-cluster args may differ from
serve/config.yaml only where documented below (IN_CLUSTER, ON_GPU): a setting added to one and
not the other fails here."""

from __future__ import annotations

import jsonschema
import pytest
import yaml

from k8s_support import K8S, ROOT, validate_crd
from rayalign.cli import main
from rayalign.serving.settings import APP_NAME, ServeSettings, read_serve_config

BASE_RAYSERVICE = K8S / "base" / "rayservice.yaml"
CPU_DEV_PATCH = K8S / "overlays" / "cpu-dev" / "rayservice-cpu.yaml"

# Where every in-cluster application differs from serve/config.yaml, and why.
IN_CLUSTER = {
    "runs_dir": "run folders on the PVC rayalign-runs, mounted at /data/runs",
    "auth.keys_file": "API keys from the Secret rayalign-api-keys, mounted at /etc/rayalign/api-keys",
    "finetune.storage": "the fine-tuning service's files and job runs on the PVC, beside the run folders",
}
# Where the GPU one (k8s/base, overlays gpu and gcs-ft) differs too.
ON_GPU = {
    **IN_CLUSTER,
    "engine.accelerator": "the CUDA build of vLLM",
    "engine.max_model_len": "a GPU holds longer contexts",
    "engine.max_num_seqs": "and more sequences at once",
    "engine.cpu_threads": "CPU cores to bind: a CPU-only setting",
    "adapters.max_per_replica": "room for more LoRA adapters per replica",
    "deployments": "replicas and actor CPUs sized for GPU nodes",
}


def rayalign_app(serve_config: dict) -> dict:
    return next(a for a in serve_config["applications"] if a["name"] == APP_NAME)


def in_cluster_serve_configs() -> dict[str, tuple[dict, dict]]:
    """{manifest: (its Serve config, the differences it may have)}: the base RayService's, and
    the one the cpu-dev overlay puts in its place."""
    base = yaml.safe_load(BASE_RAYSERVICE.read_text())["spec"]["serveConfigV2"]
    [cpu_dev] = [op["value"] for op in yaml.safe_load(CPU_DEV_PATCH.read_text()) if op["path"] == "/spec/serveConfigV2"]
    return {"k8s/base": (yaml.safe_load(base), ON_GPU), "k8s/overlays/cpu-dev": (yaml.safe_load(cpu_dev), IN_CLUSTER)}


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_the_base_rayservice_fits_kuberays_schema():
    validate_crd(yaml.safe_load(BASE_RAYSERVICE.read_text()))


@pytest.mark.parametrize("manifest", ["k8s/base", "k8s/overlays/cpu-dev"])
def test_the_rayservices_run_the_serve_config_application_but_for_documented_differences(manifest):
    config, allowed = in_cluster_serve_configs()[manifest]
    local = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())
    # Inside a pod: every interface, behind the Kubernetes Service; a proxy on every node.
    assert config["http_options"] == {"host": "0.0.0.0", "port": local["http_options"]["port"]}
    assert config["proxy_location"] == "EveryNode"
    app, local_app = rayalign_app(config), rayalign_app(local)
    assert {k: v for k, v in app.items() if k != "args"} == {k: v for k, v in local_app.items() if k != "args"}
    assert app["import_path"] == "serve.app:build_app"
    there = flat(ServeSettings.model_validate(app["args"]).model_dump())
    here = flat(ServeSettings.model_validate(local_app["args"]).model_dump())
    differ = {key for key in there.keys() | here.keys() if there.get(key) != here.get(key)}
    undocumented = sorted(k for k in differ if not any(k == a or k.startswith(a + ".") for a in allowed))
    assert not undocumented, (f"{manifest} and serve/config.yaml differ in {undocumented}: make them equal, "
                              "or document the difference in tests/test_serve_manifests.py")
    assert there["runs_dir"] == "/data/runs" and there["auth.keys_file"] == "/etc/rayalign/api-keys/keys"


def test_a_broken_manifest_fails_the_schema():
    manifest = yaml.safe_load(BASE_RAYSERVICE.read_text())
    del manifest["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]
    with pytest.raises(jsonschema.ValidationError, match="template"):
        validate_crd(manifest)


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
