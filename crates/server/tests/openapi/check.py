"""Checks an OpenAPI document with the reference validators from PyPI.

usage: check.py spec DOCUMENT      -- openapi-spec-validator, as OpenAPI 3.1
       check.py examples DOCUMENT  -- every component schema's `example` against the schema

Prints every problem and exits 1 when there is one; exits 0 and prints what it checked
otherwise.
"""

import json
import sys


def spec(doc):
    from openapi_spec_validator import OpenAPIV31SpecValidator

    errors = list(OpenAPIV31SpecValidator(doc).iter_errors())
    for e in errors:
        print(f"{'/'.join(str(p) for p in e.path)}: {e.message}")
    if not errors:
        print(f"valid OpenAPI {doc.get('openapi')}: {len(doc['paths'])} paths")
    return errors


def examples(doc):
    from openapi_schema_validator import OAS31Validator

    problems, checked = [], 0
    schemas = doc["components"]["schemas"]
    for name, schema in schemas.items():
        if "example" not in schema:
            continue
        checked += 1
        # The schema's own $refs point into the document: validate against a root that
        # holds the document's components.
        root = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
        for e in OAS31Validator(root).iter_errors(schema["example"]):
            problems.append(f"{name}.example{''.join(f'[{p!r}]' for p in e.path)}: {e.message}")
    for p in problems:
        print(p)
    if not problems:
        print(f"{checked} examples match their schemas")
    return problems


def main():
    mode, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        doc = json.load(f)
    try:
        found = {"spec": spec, "examples": examples}[mode](doc)
    except Exception as e:  # the validators raise on some broken documents (a dangling $ref)
        print(f"{mode}: the validator failed: {type(e).__name__}: {str(e)[:500]}")
        sys.exit(1)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
