"""Where code may reach the outside world: the layout's rules, read from every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
AWS_LIBRARIES = ("boto3", "botocore", "mypy_boto3_dynamodb", "aws_lambda_powertools")
# The adapters allowed to import each AWS library (everything else in callme reaches AWS through the ports).
ALLOWED = {
    "boto3": {"callme/dynamodb.py", "handlers/fanout.py", "handlers/eventbridge.py"},
    "botocore": {"callme/dynamodb.py", "handlers/eventbridge.py"},
    "mypy_boto3_dynamodb": {"callme/dynamodb.py", "handlers/wiring.py"},
}


def modules(package: str) -> list[Path]:
    return sorted((FUNCTIONS / package).glob("*.py"))


def imported(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports, wherever the import stands (functions,
    ``if TYPE_CHECKING:`` blocks); relative imports count as the package's own."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def named(path: Path) -> str:
    return path.relative_to(FUNCTIONS).as_posix()


def test_the_rules_read_real_imports() -> None:
    """The reader finds what the adapters import, so that an empty answer below means something."""
    assert {"boto3", "botocore"} <= imported(FUNCTIONS / "callme" / "dynamodb.py")
    assert "boto3" in imported(FUNCTIONS / "handlers" / "fanout.py")
    assert "aws_lambda_powertools" in imported(FUNCTIONS / "handlers" / "api.py")


@pytest.mark.parametrize("library", sorted(ALLOWED))
def test_aws_libraries_are_imported_only_by_their_adapters(library: str) -> None:
    importers = {named(path) for package in ("callme", "handlers") for path in modules(package)}
    found = {name for name in importers if library in imported(FUNCTIONS / name)}
    assert found <= ALLOWED[library], f"{library} imported outside its adapters: {sorted(found - ALLOWED[library])}"


def test_the_domain_imports_no_aws_library_but_its_dynamodb_adapter() -> None:
    for path in modules("callme"):
        if named(path) == "callme/dynamodb.py":
            continue
        assert not imported(path) & set(AWS_LIBRARIES), f"{named(path)} imports {imported(path) & set(AWS_LIBRARIES)}"


def test_the_ports_import_nothing_but_the_domain_and_the_standard_library() -> None:
    assert imported(FUNCTIONS / "callme" / "ports.py") <= {"__future__", "zlib", "collections", "dataclasses", "typing"}


def reads_environment(path: Path) -> bool:
    """Whether ``path`` uses ``os.environ`` or ``os.getenv``, or imports either."""
    readers = {"environ", "getenv"}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            if node.attr in readers:
                return True
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and {a.name for a in node.names} & readers:
            return True
    return False


def test_the_domain_knows_nothing_of_handlers_or_the_environment() -> None:
    assert reads_environment(FUNCTIONS / "handlers" / "wiring.py"), "the reader finds os.environ"
    for path in modules("callme"):
        assert "handlers" not in imported(path), named(path)
        assert not reads_environment(path), f"{named(path)} reads the environment"


@pytest.mark.filterwarnings("ignore:A test tried to use socket")
def test_the_unit_tier_is_off_the_network() -> None:
    """tests/unit/conftest.py marks every test here: opening a socket fails, in any thread."""
    import socket

    from pytest_socket import SocketBlockedError

    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(SocketBlockedError):
        socket.create_connection(("127.0.0.1", 9))
