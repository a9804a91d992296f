"""callme: an HTTP callback scheduler.

The domain package: the entry and its rules (task.py, trigger.py, validation.py, egress.py), the
use cases behind the API (service.py) and the dispatch engine behind the dispatcher (dispatch.py),
every default and setting (settings.py), and the ports they reach the world through (ports.py) with
their adapters (dynamodb.py: the only module here that imports boto3; memory.py; callback.py).
Nothing here knows about Lambda events or reads os.environ (tests/unit/test_layout.py holds it to that).
"""
