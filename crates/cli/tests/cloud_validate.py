"""Checks fleetwall's cloud-layer output against the providers' own published API models,
offline: botocore's EC2 model and cfn-lint (AWS), the Compute API discovery document
shipped with google-api-python-client (GCP), the models of azure-mgmt-network (Azure).

usage: cloud_validate.py aws|gcp|azure DIR
Prints one line per problem and exits 1 if there is any; prints "ok N" (objects checked).
"""

import json
import os
import re
import subprocess
import sys
import typing


def aws(d):
    import botocore.session
    import botocore.validate

    problems, checked = [], 0
    model = botocore.session.get_session().get_service_model("ec2")
    validator = botocore.validate.ParamValidator()
    with open(os.path.join(d, "aws-ec2-requests.json")) as f:
        requests = json.load(f)
    for i, r in enumerate(requests):
        op = model.operation_model(r["action"])
        report = validator.validate(r["parameters"], op.input_shape)
        if report.has_errors():
            problems.append(f"request {i} ({r['action']}): {report.generate_report()}")
        checked += 1
    template = os.path.join(d, "aws-cloudformation.json")
    lint = os.path.join(os.path.dirname(sys.executable), "cfn-lint")
    out = subprocess.run([lint, "--format", "parseable", template], capture_output=True, text=True)
    if out.returncode != 0 or out.stdout.strip():
        problems.append(f"cfn-lint (exit {out.returncode}): {out.stdout.strip()} {out.stderr.strip()}")
    checked += 1
    return problems, checked


def schema_check(doc, schema, value, path, problems):
    """Checks `value` against a discovery-document schema: known keys only, types, enums,
    patterns, and no read-only fields."""
    if "$ref" in schema:
        schema = doc["schemas"][schema["$ref"]]
    t = schema.get("type")
    if t == "object":
        if not isinstance(value, dict):
            problems.append(f"{path}: an object expected")
            return
        props = schema.get("properties", {})
        for k, v in value.items():
            if k not in props:
                problems.append(f"{path}.{k}: not a field of the schema")
            elif props[k].get("readOnly"):
                problems.append(f"{path}.{k}: read-only")
            else:
                schema_check(doc, props[k], v, f"{path}.{k}", problems)
        for k, p in props.items():
            if "compute.firewalls.insert" in p.get("annotations", {}).get("required", []) and k not in value:
                problems.append(f"{path}.{k}: required by firewalls.insert")
    elif t == "array":
        if not isinstance(value, list):
            problems.append(f"{path}: an array expected")
            return
        for i, v in enumerate(value):
            schema_check(doc, schema["items"], v, f"{path}[{i}]", problems)
    elif t == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: a string expected")
            return
        if "enum" in schema and value not in schema["enum"]:
            problems.append(f"{path}: {value!r} is not one of {schema['enum']}")
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            problems.append(f"{path}: {value!r} does not match {schema['pattern']}")
    elif t == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: an integer expected")
    elif t == "boolean":
        if not isinstance(value, bool):
            problems.append(f"{path}: a boolean expected")


def gcp(d):
    import googleapiclient

    path = os.path.join(os.path.dirname(googleapiclient.__file__), "discovery_cache", "documents", "compute.v1.json")
    with open(path) as f:
        doc = json.load(f)
    with open(os.path.join(d, "gcp-firewalls.json")) as f:
        firewalls = json.load(f)["firewalls"]
    problems = []
    insert = doc["resources"]["firewalls"]["methods"]["insert"]
    assert insert["request"]["$ref"] == "Firewall", insert["request"]
    names = set()
    for i, fw in enumerate(firewalls):
        schema_check(doc, {"$ref": "Firewall"}, fw, f"firewalls[{i}]", problems)
        if fw.get("name") in names:
            problems.append(f"firewalls[{i}].name: {fw['name']} is not unique")
        names.add(fw.get("name"))
        ranges = fw.get("sourceRanges", []) + fw.get("destinationRanges", [])
        if any(":" in r for r in ranges) and any(":" not in r for r in ranges):
            problems.append(f"firewalls[{i}]: IPv4 and IPv6 ranges in one rule")
    return problems, len(firewalls)


def azure_check(models, cls, value, path, problems, top=False):
    cls({})  # the model base fills in its field table on first use
    fields = {f._rest_name: (attr, f) for attr, f in cls._attr_to_rest_field.items()}
    hints = typing.get_type_hints(cls, globalns={"_models": models, **vars(sys.modules[cls.__module__])})
    if not isinstance(value, dict):
        problems.append(f"{path}: an object expected")
        return
    for k, v in value.items():
        if k not in fields:
            problems.append(f"{path}.{k}: not a field of {cls.__name__}")
            continue
        attr, f = fields[k]
        if f._visibility == ["read"] and not (top and k == "name"):
            problems.append(f"{path}.{k}: read-only in {cls.__name__}")
        azure_value(models, hints[attr], v, f"{path}.{k}", problems)
    for rest, (attr, _) in fields.items():
        h = hints[attr]
        optional = type(None) in typing.get_args(h)
        if not optional and rest not in value and attr not in ("id",):
            problems.append(f"{path}.{rest}: required by {cls.__name__}")


def azure_value(models, hint, v, path, problems):
    import enum

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
        if enums:
            known = [e.value for e in enums[0]]
            if v not in known:
                problems.append(f"{path}: {v!r} is not one of {known}")
            return
        if len(args) == 1:
            return azure_value(models, args[0], v, path, problems)
        return
    if origin is list:
        if not isinstance(v, list):
            problems.append(f"{path}: a list expected")
            return
        for i, x in enumerate(v):
            azure_value(models, args[0], x, f"{path}[{i}]", problems)
        return
    if origin is dict:
        if not isinstance(v, dict):
            problems.append(f"{path}: an object expected")
        return
    if isinstance(hint, type) and hasattr(hint, "_attr_to_rest_field") or (
        isinstance(hint, type) and issubclass(hint, models._models._Model)
    ):
        return azure_check(models, hint, v, path, problems)
    if hint is str and not isinstance(v, str):
        problems.append(f"{path}: a string expected")
    if hint is int and (not isinstance(v, int) or isinstance(v, bool)):
        problems.append(f"{path}: an integer expected")


def azure(d):
    import azure.mgmt.network.models as models

    with open(os.path.join(d, "azure-nsg.json")) as f:
        template = json.load(f)
    problems, checked = [], 0
    for k in ("$schema", "contentVersion", "resources"):
        if k not in template:
            problems.append(f"template: no {k}")
    for i, r in enumerate(template.get("resources", [])):
        if r.get("type") != "Microsoft.Network/networkSecurityGroups":
            problems.append(f"resources[{i}].type: {r.get('type')}")
        body = {k: v for k, v in r.items() if k not in ("type", "apiVersion")}
        azure_check(models, models.NetworkSecurityGroup, body, f"resources[{i}]", problems, top=True)
        rules = r.get("properties", {}).get("securityRules", [])
        seen = set()
        for j, rule in enumerate(rules):
            p = rule["properties"]
            if not 100 <= p["priority"] <= 4096:
                problems.append(f"resources[{i}].securityRules[{j}].priority: {p['priority']} outside 100..4096")
            key = (p["direction"], p["priority"])
            if key in seen:
                problems.append(f"resources[{i}].securityRules[{j}]: priority {p['priority']} taken twice")
            seen.add(key)
            if len(p.get("description", "")) > 140:
                problems.append(f"resources[{i}].securityRules[{j}].description: over 140 characters")
            if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?", rule["name"]):
                problems.append(f"resources[{i}].securityRules[{j}].name: {rule['name']!r}")
            checked += 1
        checked += 1
    return problems, checked


def main():
    kind, d = sys.argv[1], sys.argv[2]
    problems, checked = {"aws": aws, "gcp": gcp, "azure": azure}[kind](d)
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"ok {checked}")


main()
