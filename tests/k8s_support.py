"""What the k8s/ and container tests share: rendering a kustomization with `kubectl kustomize`,
KubeRay's CRD schemas made strict, the images the README documents, and the versions
pyproject.toml and scripts/setup.sh pin.

Strict schemas: a CRD's openAPIV3Schema lets unknown fields through (the API server prunes them
silently), so a misspelt field would pass. `crd_schema(kind)` adds `additionalProperties: false`
to every object schema that lists its properties and does not keep unknown fields
(`x-kubernetes-preserve-unknown-fields`), which is what the API server's pruning amounts to.
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).parent.parent
CRDS = ROOT.parent / "shared" / "kuberay-crds"
K8S = ROOT / "k8s"
KUSTOMIZATIONS = ["base", "overlays/cpu-dev", "overlays/gpu", "overlays/gcs-ft"]
IMAGE_REPO = "ghcr.io/example/rayalign"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 60k lines: the C parser
_PIN = re.compile(r"(?<![\w.-])([A-Za-z0-9][\w.-]*(?:\[[\w,]+\])?)==([\w.+]+)")  # name[extras]==version


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def image(accelerator: str) -> str:
    """The documented image of an accelerator (README "Container images")."""
    return f"{IMAGE_REPO}:{project_version()}-{accelerator}"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


def _pins_in(text: str) -> dict[str, str]:
    return {_normal(m[1]): m[2] for m in _PIN.finditer(text)}


@functools.cache
def pins() -> dict[str, dict[str, str]]:
    """{source: {package: version}} of every `name==version` in pyproject.toml (dependencies and
    every extra) and in scripts/setup.sh."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + [s for extra in project["optional-dependencies"].values() for s in extra]
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    return {"pyproject.toml": _pins_in("\n".join(specs)), "scripts/setup.sh": _pins_in(setup)}


def pinned(package: str) -> str:
    """The one version the project pins for `package` (every source that pins it agrees)."""
    found = {source: got[_normal(package)] for source, got in pins().items() if _normal(package) in got}
    assert found, f"{package} is pinned nowhere in pyproject.toml or scripts/setup.sh"
    assert len(set(found.values())) == 1, f"{package} is pinned differently: {found}"
    return next(iter(found.values()))


def run_pins(text: str) -> dict[str, str]:
    """`name==version` pins in a piece of Dockerfile (the package names normalised)."""
    return _pins_in(text)


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not installed: the manifests render with `kubectl kustomize` (kubectl 1.24+)")
    return path


@functools.cache
def _render(directory: str) -> tuple[dict, ...]:
    done = subprocess.run([kubectl(), "kustomize", str(K8S / directory)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize k8s/{directory} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.load_all(done.stdout, Loader=_LOADER) if doc)


def render(directory: str) -> list[dict]:
    """The objects `kubectl kustomize k8s/<directory>` renders (fresh copies, safe to edit)."""
    return copy.deepcopy(list(_render(directory)))


def one(objects: list[dict], kind: str) -> dict:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def ray_cluster_spec(obj: dict) -> dict:
    """The RayCluster spec inside a RayCluster, RayJob or RayService."""
    spec = obj["spec"]
    inside = {"RayCluster": spec, "RayJob": spec.get("rayClusterSpec"), "RayService": spec.get("rayClusterConfig")}
    return inside[obj["kind"]]


def pod_templates(obj: dict) -> list[tuple[str, dict]]:
    """(group name, pod spec) of the head ("head") and every worker group of a Ray object."""
    cluster = ray_cluster_spec(obj)
    groups = [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster.get("workerGroupSpecs", [])]
    return [(name, group["template"]["spec"]) for name, group in groups]


def _tighten(schema):
    """A copy of an OpenAPI v3 schema in which objects with listed properties take no others."""
    if isinstance(schema, list):
        return [_tighten(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: _tighten(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
            out[key] = _tighten(value)
        else:
            out[key] = value
    keeps_unknown = out.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and "additionalProperties" not in out and not keeps_unknown:
        out["additionalProperties"] = False
    return out


@functools.cache
def _crd_schemas() -> dict[str, dict]:
    schemas = {}
    for file in sorted(CRDS.glob("ray.io_*.yaml")):
        crd = yaml.load(file.read_text(), Loader=_LOADER)
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        schemas[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return schemas


@functools.cache
def _strict(kind: str) -> dict:
    return _tighten(_crd_schemas()[kind])


def crd_schema(kind: str, strict: bool = True) -> dict:
    """KubeRay's ray.io/v1 schema of `kind` (../shared/kuberay-crds), strict unless told."""
    if not CRDS.is_dir():
        pytest.skip(f"KubeRay's CRDs are not at {CRDS} (see ../shared/kuberay-crds/README.md)")
    if kind not in _crd_schemas():
        raise LookupError(f"no CRD of kind {kind} in {CRDS}")
    return _strict(kind) if strict else _crd_schemas()[kind]


@functools.cache
def _validator(kind: str, strict: bool) -> jsonschema.protocols.Validator:
    schema = crd_schema(kind, strict)
    jsonschema.Draft202012Validator.check_schema(schema)  # once: on a 20k-line schema it takes seconds
    return jsonschema.Draft202012Validator(schema)


def validate_crd(obj: dict, strict: bool = True) -> None:
    """Raise jsonschema.ValidationError (the most relevant error) unless the ray.io/v1 object
    `obj` fits its CRD schema."""
    error = jsonschema.exceptions.best_match(_validator(obj["kind"], strict).iter_errors(obj))
    if error is not None:
        raise error
