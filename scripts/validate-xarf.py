#!/usr/bin/python3
"""Validates X-ARF v4 reports (JSON lines on stdin) against the published
schemas in SCHEMA_DIR (xarf-v4-master.json and types/): the master schema,
which routes on category/type, and the type's own schema. Prints one line
per problem and exits 1 if any report is invalid.

Written for Debian's python3-jsonschema (4.10: RefResolver, no
`referencing`). Debian has no checkers for the formats date-time and
hostname, so strict ones are registered here, and checked to reject bad
values before anything is validated (a checker that accepts everything
would make this script pass anything).
"""
import datetime
import json
import pathlib
import re
import sys
import uuid

from jsonschema import Draft202012Validator, FormatChecker, RefResolver

RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")

checker = FormatChecker()


@checker.checks("date-time", raises=ValueError)
def date_time(value):
    if not isinstance(value, str):
        return True
    if not RFC3339.match(value):
        return False
    datetime.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


@checker.checks("hostname")
def hostname(value):
    if not isinstance(value, str):
        return True
    return len(value) <= 253 and all(LABEL.match(l) for l in value.split("."))


@checker.checks("email")
def email(value):
    if not isinstance(value, str):
        return True
    local, at, domain = value.rpartition("@")
    return bool(at and local and hostname(domain))


@checker.checks("uuid", raises=ValueError)
def is_uuid(value):
    if not isinstance(value, str):
        return True
    return str(uuid.UUID(value)) == value.lower()


def self_test():
    bad = [
        ("2025-13-01T00:00:00Z", "date-time"),
        ("2025-03-01 00:00:00", "date-time"),
        ("isp_example", "hostname"),
        ("abuse.isp.example", "email"),
        ("not-a-uuid", "uuid"),
    ]
    good = [
        ("2025-03-01T00:00:00.123Z", "date-time"),
        ("isp.example", "hostname"),
        ("abuse@isp.example", "email"),
        ("550e8400-e29b-41d4-a716-446655440000", "uuid"),
    ]
    for value, fmt in bad:
        if checker.conforms(value, fmt):
            sys.exit(f"validate-xarf: format checker {fmt} accepts {value!r}")
    for value, fmt in good:
        if not checker.conforms(value, fmt):
            sys.exit(f"validate-xarf: format checker {fmt} refuses {value!r}")


def main():
    schema_dir = pathlib.Path(sys.argv[1])
    store = {}
    for path in schema_dir.rglob("*.json"):
        schema = json.loads(path.read_text())
        store[schema["$id"]] = schema
    master = store["https://xarf.org/schemas/v4/xarf-v4-master.json"]
    self_test()

    def validator(schema):
        resolver = RefResolver(base_uri=schema["$id"], referrer=schema, store=store)
        return Draft202012Validator(schema, resolver=resolver, format_checker=checker)

    routed = validator(master)
    invalid = 0
    count = 0
    for number, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        count += 1
        report = json.loads(line)
        type_id = "https://xarf.org/schemas/v4/types/{}-{}.json".format(
            report.get("category"), str(report.get("type")).replace("_", "-")
        )
        checks = [routed]
        if type_id in store:
            checks.append(validator(store[type_id]))
        else:
            print(f"report {number}: no schema {type_id}")
            invalid += 1
        errors = {}
        for v in checks:
            for e in v.iter_errors(report):
                path = "/".join(str(p) for p in e.absolute_path) or "(report)"
                errors[f"{path}: {e.message}"] = True
        for e in sorted(errors):
            print(f"report {number}: {e}")
        invalid += bool(errors)
    print(f"{count} reports, {invalid} invalid")
    sys.exit(1 if invalid or count == 0 else 0)


if __name__ == "__main__":
    main()
