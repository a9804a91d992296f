"""CloudFormation as the template tier needs it: the tools, SAM's translation, intrinsic functions
resolved the way a deployed stack resolves them, and IAM statements matched against a request.

The resolver is small on purpose: it must turn `!GetAtt TasksTable.Arn` into the ARN of the very table a
test runs against, which no rendering library offers (they resolve attributes to placeholders).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from local.template import TEMPLATE

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


# -- the tools -------------------------------------------------------------------------------------


def tool(name: str) -> str:
    """A tool from PATH (`make test` puts .tools/<name>/bin first), else from .tools/<name>/bin."""
    found = shutil.which(name) or shutil.which(name, path=str(ROOT / ".tools" / name / "bin"))
    if not found:
        pytest.skip(f"{name} is not installed; `make test` installs it in .tools/{name}")
    return os.path.abspath(found)  # `make test` puts relative directories on PATH


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for the tools: offline, no telemetry, a region, no inherited Python paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(SAM_CLI_TELEMETRY="0", AWS_DEFAULT_REGION=REGION, AWS_REGION=REGION, **extra)
    return env


def run(command: list[str], timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, env=tool_env(**extra_env), capture_output=True, text=True, timeout=timeout, check=False
    )


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"{' '.join(result.args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"


TRANSLATE = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicies:
    def load(self):
        return {}

with open(sys.argv[1]) as handle:
    template = yaml_parse(handle.read())
template["Globals"]["Function"]["CodeUri"] = "s3://callme-artifacts/functions.zip"
for resource in template["Resources"].values():
    if resource["Type"] == "AWS::Serverless::Function" and "CodeUri" in resource["Properties"]:
        resource["Properties"]["CodeUri"] = "s3://callme-artifacts/functions.zip"
print(json.dumps(transform(template, {"AWS::Region": "us-east-1"}, NoManagedPolicies())))
"""


def translate(path: Path = TEMPLATE) -> dict[str, Any]:
    """The CloudFormation template SAM makes of ``path`` (samtranslator, offline)."""
    sam_python = Path(tool("sam")).parent / "python"
    if not sam_python.exists():
        sam_python = ROOT / ".tools" / "sam" / "bin" / "python"
    if not sam_python.exists():
        pytest.skip("samtranslator is not installed; `make test` installs it with the SAM CLI in .tools/sam")
    result = run([str(sam_python), "-c", TRANSLATE, str(path)], timeout=120)
    assert result.returncode == 0, explain(result)
    translated: dict[str, Any] = json.loads(result.stdout)
    return translated


# -- intrinsic functions -------------------------------------------------------------------------------

NO_VALUE = object()  # what AWS::NoValue leaves: the key or item disappears
_SUB = re.compile(r"\$\{([^}]+)\}")


@dataclass
class Stack:
    """A template as one deployed stack of it sees it: parameter values (the template's defaults unless
    given), pseudo parameters, and each resource's Ref and attributes (given ones, else made-up ones).
    A symbolic stack writes resources and pseudo parameters as Fn::Sub would name them: ${TasksTable.Arn},
    ${AWS::Region}; parameters and conditions still take their values."""

    template: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    name: str = "callme"
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    symbolic: bool = False

    def parameter(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        return self.template["Parameters"][name]["Default"]

    def exists(self, logical_id: str) -> bool:
        """Whether the resource is created, by its Condition."""
        condition = self.template["Resources"][logical_id].get("Condition")
        return condition is None or self.condition(condition)

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::StackName": self.name,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return "${" + name + "}" if self.symbolic and name != "AWS::NoValue" else pseudo[name]
        if name in self.template.get("Parameters", {}):
            value = self.parameter(name)
            return value if isinstance(value, str) else str(value)
        if name in self.refs:
            return self.refs[name]
        assert name in self.template["Resources"], f"Ref to {name}, which the template does not have"
        assert self.exists(name), f"Ref to {name}, which this stack does not create"
        if self.symbolic:
            return "${" + name + "}"
        return f"{self.name}-{name}-0A1B2C3D4E5F"

    def get_att(self, logical_id: str, attribute: str) -> str:
        if (logical_id, attribute) in self.attributes:
            return self.attributes[(logical_id, attribute)]
        assert logical_id in self.template["Resources"], f"GetAtt of {logical_id}, which the template does not have"
        assert self.exists(logical_id), f"GetAtt of {logical_id}, which this stack does not create"
        if self.symbolic:
            return "${" + logical_id + "." + attribute + "}"
        return f"arn:aws:fake:{REGION}:{ACCOUNT}:{logical_id}/{attribute}"

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function replaced by what CloudFormation would make of it."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                return self._intrinsic(key, argument)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def _intrinsic(self, function: str, argument: Any) -> Any:
        resolved = self.resolve
        functions: dict[str, Any] = {
            "Ref": self.ref,
            "Condition": self.condition,
            "Fn::GetAtt": lambda a: self.get_att(*(a.split(".", 1) if isinstance(a, str) else a)),
            "Fn::Sub": self._sub,
            "Fn::If": lambda a: resolved(a[1] if self.condition(a[0]) else a[2]),
            "Fn::Equals": lambda a: len({str(v) for v in resolved(a)}) == 1,
            "Fn::Not": lambda a: not resolved(a)[0],
            "Fn::And": lambda a: all(resolved(a)),
            "Fn::Or": lambda a: any(resolved(a)),
            "Fn::FindInMap": lambda a: self._find_in_map(*resolved(a)),
            "Fn::Join": lambda a: resolved(a)[0].join(str(item) for item in resolved(a)[1]),
            "Fn::Select": lambda a: resolved(a)[1][int(resolved(a)[0])],
        }
        assert function in functions, f"teach tests/template/cfn.py the intrinsic function {function}"
        return functions[function](argument)

    def _find_in_map(self, mapping: str, top: str, second: str) -> Any:
        return self.template["Mappings"][mapping][top][second]

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {name: self.resolve(value) for name, value in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in values:
                return str(values[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return str(self.ref(name))

        return _SUB.sub(substitute, text)


# -- IAM ------------------------------------------------------------------------------------------------


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def wildcard(pattern: str, text: str, ignore_case: bool) -> bool:
    """IAM's matching: * any run of characters, ? any one character, nothing else special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.IGNORECASE if ignore_case else 0) is not None


def allows(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    """Whether resolved identity-policy ``statements`` allow ``action`` on ``resource``. Only plain
    Allow statements are understood; anything else fails loudly rather than being misjudged."""
    for statement in statements:
        assert statement["Effect"] == "Allow", f"this check only understands Allow statements: {statement}"
        unknown = statement.keys() - {"Sid", "Effect", "Action", "Resource"}
        assert not unknown, f"this check cannot judge {sorted(unknown)} in {statement}"
        if any(wildcard(a, action, ignore_case=True) for a in listed(statement["Action"])) and any(
            wildcard(r, resource, ignore_case=False) for r in listed(statement["Resource"])
        ):
            return True
    return False
