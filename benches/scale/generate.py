"""Generates N resource policies (one file each, plus the derived roles file) for the
scale benchmark: root policies of distinct kinds that import derived roles and have
conditions, and every tenth file (index 5, 15, ...) a policy in scope `acme` of the kind
five files earlier. Requests always ask about kind0 (scope `acme` when it exists), so the
other policies are unrelated to the decision. The loader reads at most 10,000 files, so
N = 10,000 writes 9,999 policies and the derived roles.

Usage: generate.py <N> <out dir>
Writes <out>/policies/ and <out>/check.json (CheckResources) and <out>/plan.json
(PlanResources).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DERIVED = """apiVersion: api.cerbos.dev/v1
derivedRoles:
  name: common
  definitions:
    - name: owner
      parentRoles: [user]
      condition: {match: {expr: R.attr.owner == P.id}}
    - name: same_department
      parentRoles: [user, manager]
      condition: {match: {expr: R.attr.department == P.attr.department}}
"""

ROOT = """apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: kind{i}
  version: default
  importDerivedRoles: [common]
  rules:
    - actions: [read]
      effect: EFFECT_ALLOW
      derivedRoles: [same_department]
    - actions: [update]
      effect: EFFECT_ALLOW
      derivedRoles: [owner]
      condition:
        match:
          all:
            of:
              - expr: R.attr.status != "archived"
              - expr: R.attr.amount < {limit}
    - actions: [approve]
      effect: EFFECT_ALLOW
      roles: [manager]
      condition: {{match: {{expr: R.attr.amount <= P.attr.approval_limit}}}}
    - actions: ["*"]
      effect: EFFECT_DENY
      roles: ["*"]
      condition: {{match: {{expr: R.attr.archived == true}}}}
"""

SCOPED = """apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: kind{i}
  version: default
  scope: acme
  rules:
    - actions: [delete]
      effect: EFFECT_DENY
      roles: [user]
"""


def main() -> None:
    n, out = int(sys.argv[1]), Path(sys.argv[2])
    pol = out / "policies"
    pol.mkdir(parents=True, exist_ok=True)
    (pol / "derived_roles.yaml").write_text(DERIVED)
    n = min(n, 9_999)
    for i in range(n):
        if i % 10 == 5:
            (pol / f"kind{i - 5}_acme.yaml").write_text(SCOPED.format(i=i - 5))
        else:
            root = ROOT.replace("{limit}", str(1000 + i)).replace("{i}", str(i))
            (pol / f"kind{i}.yaml").write_text(root.replace("{{", "{").replace("}}", "}"))
    scope = "acme" if n > 5 else ""
    principal = {
        "id": "bob",
        "roles": ["user", "manager"],
        "attr": {"department": "engineering", "approval_limit": 10000},
    }
    attr = {"owner": "bob", "department": "engineering", "status": "draft",
            "amount": 500, "archived": False}
    check = {
        "requestId": "scale",
        "principal": principal,
        "resources": [{"actions": ["read", "update", "approve", "delete"],
                       "resource": {"kind": "kind0", "id": "r1", "scope": scope, "attr": attr}}],
    }
    plan = {
        "requestId": "scale-plan",
        "action": "update",
        "principal": principal,
        "resource": {"kind": "kind0", "scope": scope},
    }
    (out / "check.json").write_text(json.dumps(check))
    (out / "plan.json").write_text(json.dumps(plan))


if __name__ == "__main__":
    main()
