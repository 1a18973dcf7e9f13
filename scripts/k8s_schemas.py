"""Build kubeconform's offline schema folder from downloaded sources.

Two inputs, both obtained by `scripts/fetch-k8s-schemas` from package registries:
- the `kubernetes-validate` wheel, which bundles the core Kubernetes JSON schemas in
  kubeconform's file naming (`cronjob-batch-v1.json`), one folder per Kubernetes version;
- CustomResourceDefinition YAML files (Knative, Argo, prometheus-operator), whose
  `openAPIV3Schema` is converted the way kubeconform's openapi2jsonschema.py does, and
  stricter: unknown fields are refused at the root too, and `metadata` is checked against
  the real ObjectMeta schema instead of being any object.

Output layout (what `scripts/lint-k8s` passes to kubeconform as `-schema-location`):
  OUT/kubernetes/{kind}-{group}-{version}.json   + _definitions.json
  OUT/crds/{full.group}/{kind}_{version}.json
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# kubernetes-validate's files refer to each other through an absolute URL path; kubeconform
# resolves references relative to the file, so they are rewritten to sibling files.
ABSOLUTE_DEFINITIONS_REF = '"/api/_definitions.json#'
RELATIVE_DEFINITIONS_REF = '"_definitions.json#'
INT_OR_STRING: dict[str, Any] = {"oneOf": [{"type": "string"}, {"type": "integer"}]}


def extract_core(wheel: Path, k8s_version: str, out: Path) -> int:
    """Write the strict core schemas of one Kubernetes version; returns the file count."""
    prefix = f"kubernetes_validate/kubernetes-json-schema/v{k8s_version}-local-strict/"
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.startswith(prefix) or not name.endswith(".json"):
                continue
            text = archive.read(name).decode()
            schema = json.loads(text.replace(ABSOLUTE_DEFINITIONS_REF, RELATIVE_DEFINITIONS_REF))
            # An `$id` on kubernetes.io would make the relative references resolve there.
            schema.pop("$id", None)
            (out / name.removeprefix(prefix)).write_text(json.dumps(schema))
            count += 1
    if count == 0:
        raise SystemExit(f"no schemas for Kubernetes {k8s_version} in {wheel.name}")
    return count


def _strict(node: Any) -> Any:
    """Apply the structural-schema conventions kubeconform's converter applies, recursively."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("x-kubernetes-int-or-string") or node.get("format") == "int-or-string":
        return {**INT_OR_STRING, "description": node.get("description", "")}
    result = {key: _strict(value) for key, value in node.items()}
    if result.pop("nullable", False) and isinstance(result.get("type"), str):
        result["type"] = [result["type"], "null"]
    if (
        "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


def crd_schema(crd: dict[str, Any], version: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of one served version of a CRD, with a strict root and ObjectMeta."""
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
    properties["kind"] = {"type": "string", "enum": [kind]}
    properties["metadata"] = {"$ref": f"../../kubernetes/_definitions.json#/$defs/{OBJECT_META}"}
    schema["additionalProperties"] = False
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
    return dict(schema)


class _CrdLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader when present (the Argo CRDs are large), reading `=` as a string."""


# `=` alone is YAML 1.1's "value" tag, which PyYAML cannot construct (yaml/pyyaml#89); it
# appears as an enum member in prometheus-operator's CRDs.
_CrdLoader.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_yaml_str)


def _crds(paths: Iterable[Path]) -> Iterable[dict[str, Any]]:
    for path in paths:
        with path.open() as stream:
            for document in yaml.load_all(stream, Loader=_CrdLoader):
                if (
                    isinstance(document, dict)
                    and document.get("kind") == "CustomResourceDefinition"
                ):
                    yield document


def convert_crds(paths: Iterable[Path], out: Path) -> list[str]:
    """Write one schema per served CRD version; returns `group/version kind` names written."""
    written = []
    for crd in _crds(paths):
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served", True) or "schema" not in version:
                continue
            target = out / group / f"{kind.lower()}_{version['name']}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(crd_schema(crd, version)))
            written.append(f"{group}/{version['name']} {kind}")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    core = commands.add_parser(
        "core", help="extract core schemas from the kubernetes-validate wheel"
    )
    core.add_argument("wheel", type=Path)
    core.add_argument("k8s_version", help="e.g. 1.34.0")
    core.add_argument("out", type=Path)
    crds = commands.add_parser("crds", help="convert CRD YAML files")
    crds.add_argument("out", type=Path)
    crds.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if args.command == "core":
        count = extract_core(args.wheel, args.k8s_version, args.out)
        print(f"kubernetes {args.k8s_version}: {count} schemas", file=sys.stderr)
    else:
        written = convert_crds(args.files, args.out)
        if not written:
            raise SystemExit(
                "no CustomResourceDefinition found in " + " ".join(map(str, args.files))
            )
        print(f"{len(written)} CRD schemas: " + ", ".join(sorted(written)), file=sys.stderr)


if __name__ == "__main__":
    main()
