"""Reading template.yaml: the one source of truth for the tables' keys and indexes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


class _CloudFormationLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, ...) read as plain mappings."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open() as handle:
        template: dict[str, Any] = yaml.load(handle, Loader=_CloudFormationLoader)  # noqa: S506 (SafeLoader)
    return template


def table_definitions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """CreateTable requests for every DynamoDB table in the template, keyed by logical id."""
    tables = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::DynamoDB::Table":
            continue
        props = resource["Properties"]
        request: dict[str, Any] = {
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            request["GlobalSecondaryIndexes"] = [
                {k: v for k, v in index.items() if k in ("IndexName", "KeySchema", "Projection")}
                for index in props["GlobalSecondaryIndexes"]
            ]
        ttl = props.get("TimeToLiveSpecification")
        tables[logical_id] = {"create": request, "ttl_attribute": ttl["AttributeName"] if ttl else None}
    return tables


SAM_DEFAULT_TIMEOUT = 3  # seconds, when neither the function nor Globals.Function sets one


def function_timeout(template: dict[str, Any], logical_id: str) -> float:
    """The timeout (seconds) of a function in the template: its own, else Globals.Function's, else SAM's."""
    properties = template["Resources"][logical_id].get("Properties", {})
    globals_ = template.get("Globals", {}).get("Function", {})
    return float(properties.get("Timeout", globals_.get("Timeout", SAM_DEFAULT_TIMEOUT)))


def gateway_responses(template: dict[str, Any], api_logical_id: str = "Api") -> dict[str, Any]:
    """The API's customised gateway responses (SAM's ``GatewayResponses``), keyed by response type."""
    properties = template["Resources"][api_logical_id].get("Properties", {})
    return dict(properties.get("GatewayResponses") or {})
