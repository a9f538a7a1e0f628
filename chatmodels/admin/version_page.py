"""What a version page shows beneath its fields (templates: `admin/chatmodels/modelversion/`):
input example, how to call it, artifacts, configuration, environment, source and signature.
"""

from __future__ import annotations

import json
import shlex

from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from chatmodels import interfaces
from chatmodels.admin.display import playground_url
from chatmodels.models import ModelVersion
from chatmodels.signature import signature_rows


def _as_stored(value):
    """A JSON value as the database gives it back (tuples become lists)."""
    return json.loads(json.dumps(value))


def _pretty_json(value, *, sort_keys: bool = False) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=sort_keys)


# PostgreSQL's jsonb does not keep the order of keys, so the page puts them back in an order
# people expect (the generated schema's, `messages` first) whichever database stores them.


def _ordered_like(value, reference):
    """`value` with the keys of each object in `reference`'s order, unknown keys last."""
    if isinstance(value, dict) and isinstance(reference, dict):
        ordered = {
            key: _ordered_like(value[key], reference[key]) for key in reference if key in value
        }
        ordered.update((key, value[key]) for key in sorted(value) if key not in ordered)
        return ordered
    if isinstance(value, list) and isinstance(reference, list) and len(value) == len(reference):
        return [_ordered_like(item, match) for item, match in zip(value, reference, strict=True)]
    return value


def _schema_part(schema, key: str):
    """`schema[key]`, or the first `anyOf` alternative's."""
    if not isinstance(schema, dict):
        return None
    if key in schema:
        return schema[key]
    return next((alt[key] for alt in schema.get("anyOf", ()) if key in alt), None)


def _in_schema_order(value, schema):
    """A JSON value with its object keys in the order its JSON Schema lists the properties."""
    if isinstance(value, dict):
        properties = _schema_part(schema, "properties") or {}
        ordered = {
            key: _in_schema_order(value[key], properties[key]) for key in properties if key in value
        }
        ordered.update((key, value[key]) for key in sorted(value) if key not in ordered)
        return ordered
    if isinstance(value, list):
        items = _schema_part(schema, "items")
        return [_in_schema_order(item, items) for item in value]
    return value


def version_page_context(request, version: ModelVersion) -> dict:
    """What the read-only version page shows beneath the fields."""
    standard = interfaces.generated_signature(version.interface)
    signature = _ordered_like(version.signature or {}, standard)
    input_example = _in_schema_order(version.input_example, signature.get("inputs"))
    tables = []
    for key, title in (("inputs", "Inputs"), ("outputs", "Outputs")):
        rows = []
        for row in signature_rows(signature.get(key) or {}):
            parent, dot, leaf = row.field.rpartition(".")
            rows.append(
                {
                    "row": row,
                    "parent": parent + dot,
                    # Long paths may wrap between their parts (never inside one).
                    "parent_parts": [part + "." for part in parent.split(".")] if dot else [],
                    "leaf": leaf,
                    "depth": row.field.count("."),
                    "default": row.default,  # already written for people: 1.0, null, false
                }
            )
        top_level = sum(1 for item in rows if item["depth"] == 0)
        tables.append({"title": title, "rows": rows, "top_level": top_level})

    artifacts = [
        {
            "name": name,
            "size": filesizeformat(info.get("size") or 0) if isinstance(info, dict) else "",
            "sha256": info.get("sha256", "") if isinstance(info, dict) else "",
            "path": info.get("path", "") if isinstance(info, dict) else str(info),
        }
        for name, info in sorted((version.artifacts or {}).items())
    ]
    invocations = reverse("model-invocations", kwargs={"name": version.model.name})
    invocation_path = f"{invocations}?version={version.version}"
    body = json.dumps(input_example, ensure_ascii=False)
    curl = (
        f"curl {shlex.quote(request.build_absolute_uri(invocation_path))} \\\n"
        '  -H "Authorization: Bearer $KEY" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d {shlex.quote(body)}"
    )
    return {
        "version_obj": version,
        "signature_tables": tables,
        # Every ChatModel gets the same generated signature, so the page says so and folds it;
        # one registered by another release may differ, and is then shown open.
        "signature_is_standard": _as_stored(standard) == version.signature,
        "interface_label": interfaces.LABELS.get(version.interface, version.interface),
        "interface_formats": interfaces.FORMATS.get(version.interface, ("", "")),
        "input_example_json": _pretty_json(input_example),
        "model_config_json": (
            _pretty_json(version.model_config, sort_keys=True) if version.model_config else ""
        ),
        "artifact_rows": artifacts,
        "package_version_rows": sorted(
            (package, number)
            for package, number in (version.package_versions or {}).items()
            if package != "python"  # shown first, from python_version
        ),
        "curl_example": curl,
        "openai_model_name": f"{version.model.name}/{version.version}",
        "playground_link": playground_url(model=version.model.name, version=version.version),
        "source_lines": (version.source_code or "").splitlines(),
    }
