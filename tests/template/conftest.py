"""The template tier's fixtures: template.yaml as written, and as SAM translates it."""

from __future__ import annotations

from typing import Any

import pytest

from local.template import load_template
from tests.template.cfn import translate


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="session")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]
    return found


@pytest.fixture(scope="session")
def translated() -> dict[str, Any]:
    """The CloudFormation template SAM generates from template.yaml (samtranslator, offline)."""
    return translate()


@pytest.fixture(scope="session")
def generated(translated: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation resources SAM generates from the template."""
    found: dict[str, Any] = translated["Resources"]
    return found
